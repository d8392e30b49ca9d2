"""The fairness methods ranked by worst-group drop (issue 14, item 5): pwprune.summary.ranking,
its markdown section and the summary stage's ranking.csv, against hand arithmetic."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pwprune.summary import TABLE_COLUMNS, ranking, ranking_section

DENSE = (0.90, 0.80)  # every seed's dense model, (female, male); `all` = their mean, .85
T95 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2): the 95% t quantile with 3 seeds
DZ3 = 3.264043549699574  # the exact minimal detectable difference in sd units at 3 pairs (test_power.py)

# fine-tuned (female, male) accuracies per seed; `all` = their mean (50 samples each)
FIN = {
    # target 50%
    ("random", 0.5, "ce"): {0: (0.85, 0.65), 1: (0.84, 0.66), 2: (0.86, 0.64)},
    ("magnitude", 0.5, "ce"): {0: (0.88, 0.70), 1: (0.86, 0.72), 2: (0.90, 0.74)},
    ("magnitude", 0.5, "pw"): {0: (0.87, 0.77), 1: (0.85, 0.73), 2: (0.88, 0.75)},
    ("magnitude", 0.5, "ceag"): {0: (0.86, 0.76), 1: (0.87, 0.75), 2: (0.85, 0.77)},
    ("fairgrape", 0.5, "ce"): {0: (0.86, 0.74), 1: (0.85, 0.76), 2: (0.87, 0.73)},
    ("fairgrape", 0.5, "pw"): {0: (0.86, 0.78)},  # one seed: one shared seed with fairgrape+CE
    # target 75%
    ("magnitude", 0.75, "ce"): {0: (0.84, 0.62), 1: (0.82, 0.66), 2: (0.50, 0.50)},  # seed 2 collapsed
    ("taylor", 0.75, "ce"): {0: (0.83, 0.70), 1: (0.84, 0.68), 2: (0.82, 0.69)},
    ("taylor", 0.75, "pw"): {0: (0.82, 0.74), 1: (0.83, 0.73), 2: (0.81, 0.75)},
    ("fairprune", 0.75, "ceag"): {0: (0.84, 0.73), 1: (0.85, 0.72), 2: (0.83, 0.74)},  # no fairprune+CE
}
DEGENERATE = {("magnitude", 0.75, "ce", 2)}

# worst-group drops by hand: max over groups of (dense - fine-tuned), per seed 0, 1, 2
WORST = {
    ("random", 0.5, "ce"): [0.15, 0.14, 0.16],  # male: .80-.65, .80-.66, .80-.64
    ("magnitude", 0.5, "ce"): [0.10, 0.08, 0.06],  # male
    ("magnitude", 0.5, "pw"): [0.03, 0.07, 0.05],  # female .03 = male .03; male .07; male .05
    ("magnitude", 0.5, "ceag"): [0.04, 0.05, 0.05],  # both .04; male .05; female .05
    ("fairgrape", 0.5, "ce"): [0.06, 0.05, 0.07],  # male .06; female .05; male .07
    ("fairgrape", 0.5, "pw"): [0.04],  # female .04 (male .02)
    ("magnitude", 0.75, "ce"): [0.18, 0.14, 0.40],  # male; female .40 on the collapsed seed
    ("taylor", 0.75, "ce"): [0.10, 0.12, 0.11],  # male
    ("taylor", 0.75, "pw"): [0.08, 0.07, 0.09],  # female
    ("fairprune", 0.75, "ceag"): [0.07, 0.08, 0.07],  # male; male; female .07 (male .06)
}


def metric_rows(fin=FIN, split="test"):
    rows = []

    def add(method, target, loss, seed, stage, accs, degenerate=False):
        reduction = 0.0 if stage == "dense" else target
        for group, acc in (("female", accs[0]), ("male", accs[1]), ("all", sum(accs) / 2)):
            rows.append(
                dict(
                    experiment="toy",
                    dataset="digits",
                    model="small_cnn",
                    method=method,
                    loss=loss,
                    prune_loss="none" if method == "magnitude" else "ce",
                    finetune_loss=loss,
                    target_reduction=target,
                    achieved_reduction=reduction,
                    seed=seed,
                    stage=stage,
                    group=group,
                    n=100 if group == "all" else 50,
                    accuracy=acc,
                    auroc=0.5,
                    params=10_000 * (1 - reduction),
                    macs=1e6 * (1 - reduction),
                    latency_ms=0.5,
                    degenerate=degenerate,
                    split=split,
                )
            )

    for (method, target, loss), seeds in fin.items():
        for seed, accs in seeds.items():
            deg = (method, target, loss, seed) in DEGENERATE
            add(method, target, loss, seed, "dense", DENSE)
            add(method, target, loss, seed, "pruned", (accs[0] - 0.1, accs[1] - 0.1), deg)
            add(method, target, loss, seed, "finetuned", accs, deg)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def half95(values):
    v = np.array(values, dtype=float)
    return T95 * v.std(ddof=1) / math.sqrt(len(v))


def row(table, method, target, loss):
    hit = table[(table["method"] == method) & (table["target_reduction"] == target) & (table["loss"] == loss)]
    assert len(hit) == 1, (method, target, loss)
    return hit.iloc[0]


def test_ranking_order_worst_drops_and_accuracy_drops_by_hand():
    table = ranking(metric_rows())
    # by hand: mean worst drop per pair, ascending (rank 1 = smallest)
    order_50 = [
        ("fairgrape", "pw"),  # .04 (one seed)
        ("magnitude", "ceag"),  # .0467
        ("magnitude", "pw"),  # .05
        ("fairgrape", "ce"),  # .06
        ("magnitude", "ce"),  # .08
        ("random", "ce"),  # .15
    ]
    order_75 = [("fairprune", "ceag"), ("taylor", "pw"), ("taylor", "ce"), ("magnitude", "ce")]  # .0733 .08 .11 .24
    for target, order in ((0.5, order_50), (0.75, order_75)):
        t = table[table["target_reduction"] == target]
        assert list(zip(t["method"], t["loss"])) == order  # rows come in rank order
        assert t["rank"].tolist() == list(range(1, len(order) + 1))
    for (method, target, loss), drops in WORST.items():
        r = row(table, method, target, loss)
        assert r["worst_drop"] == pytest.approx(np.mean(drops)), (method, target, loss)
        assert r["n_seeds"] == len(drops)
        if len(drops) > 1:
            assert r["worst_drop_ci95"] == pytest.approx(half95(drops))
        else:
            assert math.isnan(r["worst_drop_ci95"])
        assert r["group_aware"] == (method in ("fairgrape", "fairprune"))
    # overall accuracy drop: dense .85 - fine-tuned all; magnitude+CE at 50%: .79, .79, .82
    assert row(table, "magnitude", 0.5, "ce")["acc_drop"] == pytest.approx((0.06 + 0.06 + 0.03) / 3)
    # the collapsed seed is counted (and included in the mean above: .24 = (.18+.14+.40)/3)
    assert row(table, "magnitude", 0.75, "ce")["n_degenerate"] == 1
    assert row(table, "taylor", 0.75, "ce")["n_degenerate"] == 0
    assert set(table["split"]) == {"test"} and set(table["experiment"]) == {"toy"}


def test_paired_comparisons_against_ce_and_the_best_plain_ce_by_hand():
    table = ranking(metric_rows())
    # the best plain CE pair: at 50% magnitude (.08) beats random (.15); fairgrape+CE (.06) is
    # lower still but group-aware, so not a plain reference. At 75% taylor (.11) beats magnitude (.24)
    assert set(table.loc[table["target_reduction"] == 0.5, "ref_method"]) == {"magnitude"}
    assert set(table.loc[table["target_reduction"] == 0.75, "ref_method"]) == {"taylor"}

    def check(r, prefix, arm, ref):
        d = [a - b for a, b in zip(arm, ref)]
        assert r[f"{prefix}_diff"] == pytest.approx(np.mean(d))
        assert r[f"{prefix}_ci95"] == pytest.approx(half95(d))
        assert r[f"{prefix}_p"] == pytest.approx(stats.ttest_rel(arm, ref).pvalue)
        assert r[f"{prefix}_mde"] == pytest.approx(DZ3 * np.std(d, ddof=1))
        assert r[f"{prefix}_pairs"] == 3 and r[f"{prefix}_note"] == ""

    # (a) against CE with the same method, hand-listed worst drops per seed
    check(row(table, "magnitude", 0.5, "pw"), "vs_ce", [0.03, 0.07, 0.05], [0.10, 0.08, 0.06])
    check(row(table, "magnitude", 0.5, "ceag"), "vs_ce", [0.04, 0.05, 0.05], [0.10, 0.08, 0.06])
    check(row(table, "taylor", 0.75, "pw"), "vs_ce", [0.08, 0.07, 0.09], [0.10, 0.12, 0.11])
    assert row(table, "magnitude", 0.5, "pw")["vs_ce_diff"] == pytest.approx(-0.03)  # -.07, -.01, -.01
    # (b) against the best plain CE pair
    check(row(table, "random", 0.5, "ce"), "vs_ref", [0.15, 0.14, 0.16], [0.10, 0.08, 0.06])
    check(row(table, "fairgrape", 0.5, "ce"), "vs_ref", [0.06, 0.05, 0.07], [0.10, 0.08, 0.06])
    check(row(table, "magnitude", 0.5, "ceag"), "vs_ref", [0.04, 0.05, 0.05], [0.10, 0.08, 0.06])
    check(row(table, "magnitude", 0.75, "ce"), "vs_ref", [0.18, 0.14, 0.40], [0.10, 0.12, 0.11])
    check(row(table, "fairprune", 0.75, "ceag"), "vs_ref", [0.07, 0.08, 0.07], [0.10, 0.12, 0.11])
    assert row(table, "fairprune", 0.75, "ceag")["vs_ref_diff"] == pytest.approx(-0.11 / 3)

    # blanks: CE rows against themselves, the reference against itself
    for method, target in (("random", 0.5), ("magnitude", 0.5), ("fairgrape", 0.5), ("taylor", 0.75)):
        r = row(table, method, target, "ce")
        assert math.isnan(r["vs_ce_diff"]) and math.isnan(r["vs_ce_p"]) and r["vs_ce_pairs"] == 0
        assert math.isnan(r["vs_ce_mde"])
    for method, target in (("magnitude", 0.5), ("taylor", 0.75)):
        r = row(table, method, target, "ce")
        assert math.isnan(r["vs_ref_diff"]) and math.isnan(r["vs_ref_p"])
        assert "reference" in r["vs_ref_note"]
    # no fairprune+CE to compare fairprune+CEAG with: blank, saying why
    r = row(table, "fairprune", 0.75, "ceag")
    assert math.isnan(r["vs_ce_diff"]) and math.isnan(r["vs_ce_p"])
    assert r["vs_ce_note"] == "no fairprune+CE trials"
    # one shared seed: that seed's difference, no interval, no p, and the reason
    r = row(table, "fairgrape", 0.5, "pw")
    assert r["vs_ce_diff"] == pytest.approx(0.04 - 0.06) and r["vs_ce_pairs"] == 1
    assert math.isnan(r["vs_ce_ci95"]) and math.isnan(r["vs_ce_p"])
    assert r["vs_ce_note"] == "1 shared seed: no t-test (needs 2)"
    assert math.isnan(r["vs_ce_mde"]) and math.isnan(r["vs_ref_mde"])
    assert r["vs_ref_diff"] == pytest.approx(0.04 - 0.10) and math.isnan(r["vs_ref_p"])
    assert r["vs_ref_note"] == "1 shared seed: no t-test (needs 2)"


def test_no_plain_ce_pair_leaves_the_reference_blank_and_a_wrong_split_is_named():
    fin = {k: v for k, v in FIN.items() if k[1] == 0.75 and k[2] != "ce"}  # taylor+PW, fairprune+CEAG
    table = ranking(metric_rows(fin))
    assert (table["ref_method"] == "").all() and table["vs_ref_p"].isna().all()
    assert set(table["vs_ref_note"]) == {"no plain method fine-tuned with CE has a worst-group drop at this target"}
    assert table["method"].tolist() == ["fairprune", "taylor"]  # still ranked: .0733 < .08
    with pytest.raises(ValueError, match=r"split='val'.*valid: test"):
        ranking(metric_rows(), split="val")


def test_ranking_section_lists_the_pairs_in_rank_order_and_counts_the_tests():
    lines = ranking_section(ranking(metric_rows()))
    text = "\n".join(lines)
    assert lines[0] == "## Fairness methods ranked by worst-group drop"
    # p values: at 50% 2 against CE + 4 against magnitude+CE; at 75% 1 + 3
    assert "makes 10 paired t-tests over 2 tables" in text
    assert "not evidence that two pairs are equal" in text
    head_50 = lines.index("### toy, test, FLOP reduction 50% (best plain CE: magnitude+CE)")
    head_75 = lines.index("### toy, test, FLOP reduction 75% (best plain CE: taylor+CE)")
    expected_50 = [
        "| 1 | fairgrape+PW | 1 | 0 | 4.0 | ",
        "| 2 | magnitude+CEAG | 3 | 0 | 4.7 ± ",
        "| 3 | magnitude+PW | 3 | 0 | 5.0 ± ",
        "| 4 | fairgrape+CE | 3 | 0 | 6.0 ± ",
        "| 5 | magnitude+CE | 3 | 0 | 8.0 ± ",
        "| 6 | random+CE | 3 | 0 | 15.0 ± ",
    ]
    expected_75 = [
        "| 1 | fairprune+CEAG | 3 | 0 | 7.3 ± ",
        "| 2 | taylor+PW | 3 | 0 | 8.0 ± ",
        "| 3 | taylor+CE | 3 | 0 | 11.0 ± ",
        "| 4 | magnitude+CE | 3 | 1 | 24.0 ± ",
    ]
    for head, expected in ((head_50, expected_50), (head_75, expected_75)):
        body = [ln for ln in lines[head:] if ln.startswith("| ") and ln[2].isdigit()][: len(expected)]
        assert [b[: len(e)] for b, e in zip(body, expected)] == expected
    # magnitude+PW against magnitude+CE: -3.0 pp, its interval and p
    p = stats.ttest_rel([0.03, 0.07, 0.05], [0.10, 0.08, 0.06]).pvalue
    assert f"| -3.0 ± {100 * half95([-0.07, -0.01, -0.01]):.1f} | {p:.3g} |" in text
    # and beside it the MDE: 3.2640 sd, sd of -.07, -.01, -.01 = .034641 -> 11.3 pp
    assert f"| {p:.3g} | 11.3 | " in text and "| p | MDE (pp) |" in text
    assert "detect with 80% probability at this number of paired seeds (α 0.05 two-sided" in text
    assert "vs fairgrape+CE: 1 shared seed: no t-test (needs 2); vs magnitude+CE: 1 shared seed: no t-test" in text
    assert "the best plain CE pair: the reference" in text


def test_summary_stage_appends_the_section_and_writes_ranking_csv(tmp_path):
    from pwprune.stages.report import summary_stage

    metrics = tmp_path / "metrics.csv"
    metric_rows().to_csv(metrics, index=False)
    md, csv, fair, ranked = (tmp_path / f for f in ("summary.md", "summary.csv", "fairness.csv", "ranking.csv"))
    summary_stage(metrics, md, csv, fair, ranking_csv=ranked, log=lambda *_: None)
    back = pd.read_csv(ranked, keep_default_na=False, na_values=[""])
    assert len(back) == 10
    assert back.loc[0, "method"] == "fairgrape" and back.loc[0, "loss"] == "pw" and back.loc[0, "rank"] == 1
    text = md.read_text()
    assert "## Fairness methods ranked by worst-group drop" in text
    assert text.index("## Fairness metrics of the field") < text.index("## Fairness methods ranked")
