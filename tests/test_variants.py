"""Variants (issue 19): an experiment that prunes another's dense models with other method
options, compared with it trial by trial (results/variants/all)."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.colors import to_hex
from scipy import stats

import pwprune.config as pc
from pwprune.summary import TABLE_COLUMNS, compare_variants


def _rows(exp, seed, loss, stage, accs, target=0.5):
    out = []
    for group, acc in {**accs, "all": sum(accs.values()) / len(accs)}.items():
        out.append(
            {
                "experiment": exp,
                "dataset": "digits",
                "model": "small_cnn",
                "method": "taylor",
                "loss": loss,
                "prune_loss": loss,
                "finetune_loss": loss,
                "target_reduction": target,
                "achieved_reduction": target,
                "seed": seed,
                "stage": stage,
                "group": group,
                "n": 10,
                "accuracy": acc,
                "auroc": 0.9,
                "params": 100,
                "macs": 1000,
                "latency_ms": 0.1,
                "degenerate": False,
                "split": "test",
            }
        )
    return out


def test_compare_variants_pairs_by_seed_by_hand():
    rows = []
    dense = {"a": 0.9, "b": 0.8}
    base_b = {0: 0.70, 1: 0.60, 2: 0.65}  # group b accuracy after fine-tuning, base
    var_b = {0: 0.75, 1: 0.70, 2: 0.66}  # variant
    for seed in (0, 1, 2):
        for exp, b in (("base", base_b), ("var", var_b)):
            rows += _rows(exp, seed, "ce", "dense", dense)
            rows += _rows(exp, seed, "ce", "finetuned", {"a": 0.85, "b": b[seed]})
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    res = compare_variants(df, [("var", "base")])
    assert len(res) == 1
    r = res.iloc[0]
    gap_base = np.array([0.85 - base_b[s] for s in (0, 1, 2)])
    gap_var = np.array([0.85 - var_b[s] for s in (0, 1, 2)])
    assert r["n_pairs"] == 3
    assert math.isclose(r["gap_base"], gap_base.mean()) and math.isclose(r["gap_variant"], gap_var.mean())
    assert math.isclose(r["gap_diff"], (gap_var - gap_base).mean())
    assert math.isclose(r["gap_p"], stats.ttest_rel(gap_var, gap_base).pvalue)
    # the test's minimal detectable difference: 3.2640 sd at 3 pairs (test_power.py)
    sd = (gap_var - gap_base).std(ddof=1)
    assert math.isclose(r["gap_diff_mde"], 3.264043549699574 * sd, rel_tol=1e-9)
    # worst-group drop from the seed's dense model: group b, 0.8 - accuracy
    drops_var = np.array([0.8 - var_b[s] for s in (0, 1, 2)])
    assert math.isclose(r["worst_drop_variant"], drops_var.mean())
    half = stats.t.ppf(0.975, 2) * (gap_var - gap_base).std(ddof=1) / math.sqrt(3)
    assert math.isclose(r["gap_diff_ci95"], half)


def test_variant_figure_draws_base_and_variant_per_loss(tmp_path, monkeypatch):
    """Per panel four series: CE and PW of the base (circles, solid) and of the variant
    (squares, dashed), each the mean over seeds of the plotted value."""
    from pwprune import plots

    figs = {}
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, stem: figs.setdefault("f", fig) and real(fig, stem))
    rows = []
    for seed in (0, 1):
        for exp, b in (("base", 0.6), ("var", 0.7)):
            for loss, shift in (("ce", 0.0), ("pw", 0.05)):
                rows += _rows(exp, seed, loss, "dense", {"a": 0.9, "b": 0.8})
                rows += _rows(exp, seed, loss, "finetuned", {"a": 0.85, "b": b + shift + 0.01 * seed})
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    plots.variant_comparison(df, "var", "base", str(tmp_path / "v"))
    gap_ax = figs["f"].axes[0]
    drawn = {
        (c.lines[0].get_marker(), c.lines[0].get_linestyle(), to_hex(c.lines[0].get_color())): [
            round(float(y), 6) for y in c.lines[0].get_ydata()
        ]
        for c in gap_ax.containers
    }
    ce, pw = to_hex(plots._color("ce")), to_hex(plots._color("pw"))
    expected = {("o", "-", ce): 0.605, ("o", "-", pw): 0.655, ("s", "--", ce): 0.705, ("s", "--", pw): 0.755}
    assert drawn == {k: [round(100 * (0.85 - b), 6)] for k, b in expected.items()}


def _config(**changes):
    cfg = pc.load_yaml_strict("params.yaml")
    cfg["experiments"]["v"] = {**cfg["experiments"]["default"], "variant_of": "default", **changes}
    return cfg


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"variant_of": "nope"}, "experiments.v.variant_of: 'nope' is not another defined experiment"),
        ({"model": "resnet20"}, "experiments.v.model: must equal experiments.default.model"),
        ({"seeds": [0, 9]}, "experiments.v.seeds: [9] are not seeds of 'default'"),
        ({"variant_of": "default_authors"}, "'default_authors' is itself a variant"),
    ],
)
def test_a_variant_must_share_its_bases_dense_models(changes, message):
    with pytest.raises(pc.ConfigError) as e:
        pc.validate(_config(**changes), "workflow/schemas/params.schema.yaml")
    assert message in str(e.value)


@pytest.mark.e2e
def test_variant_run_uses_the_base_dense_models_and_compares(repo_copy):
    from matplotlib.image import imread

    from helpers import snakemake

    cfg = yaml.safe_load((repo_copy / "tests" / "smoke.yaml").read_text())
    base = cfg["experiments"]["smoke"]
    base["prune"].update(methods=["magnitude", "taylor"], targets=[0.5])
    base["seeds"] = [0, 1]
    base.pop("ablation")
    variant = {k: v for k, v in base.items()}
    variant["prune"] = {
        **base["prune"],
        "methods": ["taylor"],
        "taylor": {"schedule": "authors", "batches_per_step": 2, "prunes_per_step": 4, "lr": 0.01, "momentum": 0.0},
    }
    cfg["experiments"]["smoke_authors"] = {**variant, "variant_of": "smoke", "description": "authors' Taylor"}
    (repo_copy / "variant.yaml").write_text(yaml.safe_dump(cfg))
    dry = snakemake(repo_copy, "results/variants/all", "-n", "--configfile=variant.yaml").stdout
    assert "exp=smoke_authors" in dry
    # one dense model per seed: the variant trains none of its own, and prunes no magnitude
    assert dry.count("rule train_dense:") == 2 and "exp=smoke_authors, seed=0" in dry
    assert "results/smoke_authors/seed0/dense" not in dry
    assert "smoke_authors/seed0/pruned/magnitude" not in dry

    snakemake(repo_copy, "results/variants/all", "--cores", "2", "--configfile=variant.yaml")
    table = pd.read_csv(repo_copy / "results/variants/summary.csv")
    assert set(zip(table["variant"], table["method"], table["loss"])) == {
        ("smoke_authors", "taylor", "ce"),
        ("smoke_authors", "taylor", "pw"),
    }
    assert (table["n_pairs"] == 2).all()
    md = (repo_copy / "results/variants/summary.md").read_text()
    assert "authors' Taylor" in md and "| smoke_authors | smoke | test | taylor | pw | 50 | 2 |" in md
    # the variant's trials really differ from the base's (another schedule, the same dense model)
    assert not np.allclose(table["accuracy_variant"], table["accuracy_base"]) or not np.allclose(
        table["gap_variant"], table["gap_base"]
    )
    png = repo_copy / "results/figures/smoke_authors/variant_comparison.png"
    assert imread(png).shape[0] > 300
    log = (repo_copy / "logs/smoke_authors/seed0/prune/taylor-pw/0.5.log").read_text()
    assert "taylor trajectory" in log
