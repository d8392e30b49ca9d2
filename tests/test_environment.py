"""The numeric environment of a job (pwprune.environment) and the summary's report of the
environments a table's numbers came from (pwprune.summary.environment_report)."""

from importlib import metadata

import pandas as pd
import pytest
import torch

from pwprune.environment import environment_id, machine_id, numeric_environment
from pwprune.summary import (
    TABLE_COLUMNS,
    clean_metrics,
    compare_variants,
    environment_report,
    summarize,
    write_summary,
    write_variant_summary,
)

CPU = {
    "device_type": "cpu",
    "device_model": "AMD EPYC 7B13",
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "torch_pruning": "1.6.1",
    "cuda": None,
    "cudnn": None,
    "deterministic": True,
    "precision": "fp32",
    "threads": 2,
}


def env(threads=2, **changes):
    return environment_id({**CPU, "threads": threads, **changes})


XEON = {"device_model": "Intel Xeon Platinum 8480"}
A100 = {"device_type": "cuda", "device_model": "NVIDIA A100-SXM4-80GB", "cuda": "12.8", "cudnn": "91000"}
H100 = {**A100, "device_model": "NVIDIA H100 80GB HBM3"}

# (female, male) fine-tuned accuracies per loss and seed; the dense model has (0.90, 0.80)
FIN = {
    "ce": {0: (0.88, 0.70), 1: (0.86, 0.72), 2: (0.90, 0.74)},
    "pw": {0: (0.87, 0.77), 1: (0.85, 0.73), 2: (0.88, 0.80)},
}


def table(envs, experiment="toy", method="magnitude"):
    """A small tidy table: dense, pruned and fine-tuned rows (groups female, male, all) of one
    method at 50% for CE and PW and seeds 0-2. envs(stage, seed) -> that checkpoint's environment
    line (None: the column left empty, as a table read back from CSV without it)."""
    rows = []
    for loss, seeds in FIN.items():
        for seed, fin in seeds.items():
            for stage, accs in (("dense", (0.90, 0.80)), ("pruned", (fin[0] - 0.1, fin[1] - 0.1)), ("finetuned", fin)):
                for group, acc in (("female", accs[0]), ("male", accs[1]), ("all", sum(accs) / 2)):
                    reduction = 0.0 if stage == "dense" else 0.5
                    rows.append(
                        dict(
                            experiment=experiment,
                            dataset="digits",
                            model="small_cnn",
                            method=method,
                            loss=loss,
                            prune_loss="none",
                            finetune_loss=loss,
                            target_reduction=0.5,
                            achieved_reduction=reduction,
                            counted_layers=3,
                            seed=seed,
                            stage=stage,
                            group=group,
                            n=100 if group == "all" else 50,
                            accuracy=acc,
                            auroc=min(acc + 0.05, 1.0),
                            params=10_000 * (1 - reduction),
                            macs=1e6 * (1 - reduction),
                            latency_ms=0.5 * (1 - reduction) + 0.05,
                            degenerate=False,
                            split="test",
                            environment=envs(stage, seed),
                        )
                    )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


STAGE_THREADS = {"dense": 4, "pruned": 1, "finetuned": 2}


def clean(stage, seed):
    # one machine; each stage with its own configured thread count
    return env(STAGE_THREADS[stage])


# ---------------------------------------------------------------- pwprune.environment


def test_environment_id_and_machine_id_round_trip():
    line = env(2)
    assert line == (
        "cpu AMD EPYC 7B13 | torch 2.14.1 | torchvision 0.29.1 | torch_pruning 1.6.1 | deterministic | fp32 | 2 threads"
    )
    assert env(1).endswith("| fp32 | 1 thread")
    # machine_id drops the thread count and nothing else
    assert machine_id(line) == line.rsplit(" | ", 1)[0]
    assert machine_id(env(1)) == machine_id(env(8)) == machine_id(line)
    assert machine_id(machine_id(line)) == machine_id(line)
    assert machine_id(env(2, **XEON)) != machine_id(line)
    assert machine_id(env(2, deterministic=False)) != machine_id(line)
    gpu = env(2, **A100)
    assert "cuda NVIDIA A100-SXM4-80GB" in gpu and "| cuda 12.8 | cudnn 91000 |" in gpu
    assert machine_id(gpu) == gpu.rsplit(" | ", 1)[0]
    assert environment_id(None) == environment_id({}) == "unrecorded"
    assert machine_id("unrecorded") == "unrecorded"


def test_numeric_environment_reads_live_cpu_state():
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(3)
        assert numeric_environment("cpu")["threads"] == 3
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(False)
        e = numeric_environment("cpu")
        assert e["threads"] == 1 and e["deterministic"] is False
        torch.use_deterministic_algorithms(True)
        e = numeric_environment(torch.device("cpu"), precision="fp32")
        assert e["deterministic"] is True and e["deterministic"] == torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
    assert e["torch"] == str(torch.__version__)
    assert e["torchvision"] == metadata.version("torchvision")
    assert e["torch_pruning"] == metadata.version("torch-pruning")
    assert e["device_type"] == "cpu" and e["device_model"] == e["cpu_model"]
    assert e["cuda"] is None and e["cudnn"] is None and e["gpu"] is None
    assert e["precision"] == "fp32"
    assert environment_id(e).endswith("| deterministic | fp32 | 1 thread")


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine: the GPU fields are recorded only on one"
)
def test_numeric_environment_records_the_gpu():
    e = numeric_environment("cuda:0")
    assert e["device_type"] == "cuda"
    assert e["gpu"] == torch.cuda.get_device_name(0) and e["device_model"] == e["gpu"]
    assert e["cuda"] == str(torch.version.cuda) and e["cuda"] != "None"
    assert e["cudnn"] == str(torch.backends.cudnn.version()) and e["cudnn"] != "None"
    line = environment_id(e)
    assert line.startswith(f"cuda {e['gpu']} | ") and f"| cuda {e['cuda']} | cudnn {e['cudnn']} |" in line


def test_tf32_shows_in_the_line_of_a_cuda_environment_that_allowed_it():
    """TF32 is recorded (`tf32`); a CUDA line says so when it was allowed. CPU lines, lines with
    TF32 off (every job's, pwprune.stages.inputs.set_tf32) and older records without the key read
    as before."""
    assert env(2, **A100, tf32=True).endswith("| fp32 (tf32 allowed) | 2 threads")
    assert env(2, **A100, tf32=False) == env(2, **A100)
    assert env(2, tf32=True) == env(2)  # the flag does nothing on a CPU
    assert machine_id(env(2, **A100, tf32=True)) != machine_id(env(2, **A100))


def test_the_cuda_fields_are_read_from_the_device(monkeypatch):
    """numeric_environment's CUDA branch, reached on a CPU: the GPU's name and the CUDA and cuDNN
    versions come from torch's answers for the device (stand-ins here)."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"Stand-in GPU {torch.device(d).index}")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91300)
    e = numeric_environment("cuda:1", "bf16")
    assert e["device_type"] == "cuda" and e["gpu"] == e["device_model"] == "Stand-in GPU 1"
    assert e["cuda"] == "13.0" and e["cudnn"] == "91300" and e["precision"] == "bf16"
    assert isinstance(e["tf32"], bool)
    assert environment_id(e).startswith("cuda Stand-in GPU 1 | ") and "| cuda 13.0 | cudnn 91300 |" in environment_id(e)


# ---------------------------------------------------------------- the report


def test_one_machine_with_per_stage_threads_does_not_warn():
    lines, warnings = environment_report(table(clean))
    assert warnings == []
    assert lines == [
        "- **toy**",
        f"  - `{env(4)}`: dense 3 seeds (0, 1, 2)",
        f"  - `{env(1)}`: pruned 3 seeds (0, 1, 2)",
        f"  - `{env(2)}`: finetuned 3 seeds (0, 1, 2)",
    ]


def test_dense_and_finetuned_on_different_cpu_models_warns_naming_both():
    def envs(stage, seed):
        return env(STAGE_THREADS[stage], **(XEON if stage == "finetuned" else {}))

    lines, warnings = environment_report(table(envs))
    assert len(warnings) == 1
    w = warnings[0]
    assert w.startswith("**WARNING** (experiment toy)")
    assert machine_id(env(**XEON)) in w and machine_id(env()) in w
    assert "differ in `cpu AMD EPYC 7B13` vs `cpu Intel Xeon Platinum 8480`" in w
    assert "(finetuned 3 seeds (0, 1, 2))" in w and "(dense 3 seeds (0, 1, 2); pruned 3 seeds (0, 1, 2))" in w
    assert "within the seed spread, not bit for bit" in w
    assert "rerun" in w and "snakemake --forcerun" in w
    assert f"  - `{env(2, **XEON)}`: finetuned 3 seeds (0, 1, 2)" in lines


def test_seeds_split_across_gpu_types_warns():
    def envs(stage, seed):
        return env(STAGE_THREADS[stage], **(H100 if seed == 2 else A100))

    _, warnings = environment_report(table(envs))
    assert len(warnings) == 1
    w = warnings[0]
    assert "NVIDIA A100-SXM4-80GB" in w and "NVIDIA H100 80GB HBM3" in w
    # the minority (seed 2) is what to rerun
    assert "dense 1 seed (2); pruned 1 seed (2); finetuned 1 seed (2)" in w
    assert "`results/toy/seed2/dense`" in w and "results/toy/seed{" not in w


def test_different_thread_counts_within_one_stage_warn():
    def envs(stage, seed):
        return env(8 if (stage, seed) == ("finetuned", 2) else STAGE_THREADS[stage])

    _, warnings = environment_report(table(envs))
    assert len(warnings) == 1
    w = warnings[0]
    assert w.startswith("**WARNING** (experiment toy, stage finetuned)") and "thread counts" in w
    assert "`2 threads` (2 seeds (0, 1)); `8 threads` (1 seed (2))" in w
    assert "`results/toy/seed2/finetuned`" in w and "snakemake --forcerun finetune`" in w


def test_library_versions_and_deterministic_mode_are_mixing_too():
    for change in ({"torch": "2.13.0"}, {"deterministic": False}, {"precision": "bf16"}):

        def envs(stage, seed, change=change):
            return env(STAGE_THREADS[stage], **(change if stage == "pruned" else {}))

        _, warnings = environment_report(table(envs))
        assert len(warnings) == 1 and "(pruned 3 seeds (0, 1, 2))" in warnings[0], change


def test_unrecorded_alone_is_listed_and_mixed_with_recorded_warns():
    lines, warnings = environment_report(table(lambda stage, seed: None))
    assert warnings == []
    assert lines[1].startswith("  - `unrecorded` (written before environments were recorded): dense 3 seeds")
    # a table without the column at all
    lines, warnings = environment_report(table(clean).drop(columns="environment"))
    assert warnings == [] and "`unrecorded`" in lines[1]

    def envs(stage, seed):
        return None if stage == "dense" else env(STAGE_THREADS[stage])

    _, warnings = environment_report(table(envs))
    assert len(warnings) == 1 and "`unrecorded`" in warnings[0] and "(dense 3 seeds (0, 1, 2))" in warnings[0]


def test_clean_metrics_keeps_environment_a_string():
    df = table(lambda stage, seed: env(2) if seed else float("nan"))
    out = clean_metrics(df)
    assert set(out["environment"]) == {env(2), "unrecorded"}
    assert all(isinstance(v, str) for v in out["environment"])


def test_experiments_are_judged_apart_and_variants_with_their_base():
    base = table(clean, "toy")
    variant = table(lambda stage, seed: env(STAGE_THREADS[stage], **XEON), "toy_alt")
    df = pd.concat([base, variant], ignore_index=True)
    lines, warnings = environment_report(df)
    assert warnings == [] and "- **toy**" in lines and "- **toy_alt**" in lines
    _, warnings = environment_report(df, {"toy_alt vs toy": ["toy_alt", "toy"]})
    assert len(warnings) == 1 and warnings[0].startswith("**WARNING** (toy_alt vs toy)")
    assert "toy: dense 3 seeds" in warnings[0] and "toy_alt: dense 3 seeds" in warnings[0]


# ---------------------------------------------------------------- summary.md


def _section(text):
    return text.split("## Numeric environments", 1)[1]


def test_write_summary_lists_environments(tmp_path):
    md, csv = tmp_path / "summary.md", tmp_path / "summary.csv"
    write_summary(summarize(table(clean)), md, csv)
    text = md.read_text()
    assert "WARNING" not in text
    section = _section(text)
    assert f"`{env(4)}`: dense 3 seeds (0, 1, 2)" in section
    assert "No comparison mixes environments." in section
    assert list(pd.read_csv(csv).columns) == list(summarize(table(clean)).columns)


def test_write_summary_warns_in_the_section_and_at_the_top(tmp_path):
    def envs(stage, seed):
        return env(STAGE_THREADS[stage], **(XEON if stage == "finetuned" else {}))

    md, csv = tmp_path / "summary.md", tmp_path / "summary.csv"
    metrics = table(envs)
    write_summary(summarize(metrics), md, csv)
    text = md.read_text()
    top, section = text.split("## Numeric environments", 1)
    assert "**WARNING** (experiment toy)" in section and "Intel Xeon Platinum 8480" in section
    assert "**WARNING** (experiment toy)" in top.split("| experiment |", 1)[0]  # above the table
    # the table keeps its one row per method and target
    assert sum(1 for line in top.splitlines() if line.startswith("| toy |")) == 1
    # the metrics table passed explicitly gives the same
    plain = summarize(metrics)
    plain.attrs = {}
    md2 = tmp_path / "summary2.md"
    write_summary(plain, md2, tmp_path / "summary2.csv", metrics=metrics)
    assert md2.read_text() == text
    # without either, the section says the environments are unknown
    write_summary(plain, md2, tmp_path / "summary2.csv")
    assert "(unknown: no metrics table was given to the summary)" in _section(md2.read_text())


def test_write_variant_summary_has_the_section(tmp_path):
    df = pd.concat(
        [table(clean, "toy"), table(lambda stage, seed: env(STAGE_THREADS[stage], **H100), "toy_alt")],
        ignore_index=True,
    )
    variants = compare_variants(df, [("toy_alt", "toy")])
    md, csv = tmp_path / "variants.md", tmp_path / "variants.csv"
    write_variant_summary(variants, summarize(df), md, csv, {"toy_alt": "the same on a GPU"})
    text = md.read_text()
    section = _section(text)
    assert "- **toy**" in section and "- **toy_alt**" in section
    assert "**WARNING** (toy_alt vs its base toy)" in section and "NVIDIA H100 80GB HBM3" in section
    assert "**WARNING** (toy_alt vs its base toy)" in text.split("| variant |", 1)[0]
    md2 = tmp_path / "variants2.md"
    write_variant_summary(variants, summarize(df), md2, csv, {"toy_alt": "the same on a GPU"}, metrics=df)
    assert md2.read_text() == text
