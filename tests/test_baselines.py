"""The shipped `baselines` experiment (issue 14): every pruning method, fair baselines included,
and every fine-tuning loss, CEAG included, through the real Snakemake CLI to the comparison
figure and the ranked summary."""

import json

import pandas as pd
import pytest
import yaml

from helpers import REPO
from pwprune import names


def _shipped():
    return yaml.safe_load((REPO / "params.yaml").read_text())["experiments"]["baselines"]


def test_shipped_baselines_run_every_method_and_loss_on_the_defaults_data():
    """The comparison is on equal terms: the default's data, model, training and seeds, all
    methods and all labels, so each baseline pairs with CE by seed."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())["experiments"]
    base, default = params["baselines"], params["default"]
    assert base["prune"]["methods"] == list(names.METHODS)
    assert base["losses"] == list(names.EXPERIMENT_LOSS_LABELS)
    for key in ("dataset", "model", "seeds", "train", "finetune", "pw"):
        assert base[key] == default[key], key
    assert set(base["prune"]["targets"]) <= set(default["prune"]["targets"])
    assert "variant_of" not in base  # its own dense models: `active: [baselines]` runs it end to end


@pytest.mark.e2e
def test_baselines_experiment_end_to_end(repo_copy):
    from matplotlib.image import imread

    from helpers import snakemake

    exp = _shipped()
    # the shipped experiment at wiring scale: same methods, losses and target; 2 seeds so that
    # the paired tests have pairs
    exp.update(seeds=[0, 1], train={"epochs": 2, "lr": 0.003, "batch_size": 128})
    exp["finetune"] = {**exp["finetune"], "epochs": 2}
    exp["dataset"] = {**exp["dataset"], "image_size": 8, "train_copies": 1}
    exp["prune"].update(
        taylor={"steps": 2, "batches_per_step": 1, "lr": 0.001},
        autobot={"iterations": 10, "lr": 0.05, "beta": 2.0, "binarization": 0.1},
        fairgrape={"batches": 2},
        fairprune={"batches": 2},
        batch_size=128,
    )
    exp["inference"] = {"batch_size": 512}
    exp["evaluate"] = {"latency_batch": 1, "latency_repeats": 2}
    cfg = {"active": ["baselines"], "experiments": {"baselines": exp}}
    (repo_copy / "baselines.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(repo_copy, "results/figures/all", "--cores", "2", "--configfile=baselines.yaml", timeout=1500)

    metrics = pd.read_csv(repo_copy / "results/metrics.csv")
    tuned = metrics[(metrics["stage"] == "finetuned") & (metrics["group"] == "all")]
    expected = {(m, label, s) for m in names.METHODS for label in names.EXPERIMENT_LOSS_LABELS for s in (0, 1)}
    assert set(zip(tuned["method"], tuned["loss"], tuned["seed"])) == expected
    # CEAG fine-tuning kept its multipliers, one per group, in the history
    target = f"{exp['prune']['targets'][0]:g}"
    hist = json.loads(
        (repo_copy / f"results/baselines/seed0/finetuned/fairgrape-ce-ceag/{target}/history.json").read_text()
    )
    assert len(hist[-1]["constraints"]["multipliers"]) == 2
    # the ranking: one row per method x label at the target, ranked by worst-group drop
    ranking = pd.read_csv(repo_copy / "results/ranking.csv")
    assert len(ranking) == len(names.METHODS) * len(names.EXPERIMENT_LOSS_LABELS)
    assert sorted(ranking["rank"]) == list(range(1, len(ranking) + 1))
    md = (repo_copy / "results/summary.md").read_text()
    assert "ranked by worst-group drop" in md
    for fig in ("comparison", "group_performance", "fairness_gap"):
        assert imread(repo_copy / f"results/figures/baselines/{fig}.png").shape[0] > 300
