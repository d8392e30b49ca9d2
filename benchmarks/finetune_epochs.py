"""Would more fine-tuning change a finished run's drops? Fine-tune a completed run's pruned models
again with another schedule and print the convergence diagnostic and the drops it gives.

    python benchmarks/finetune_epochs.py RUN --epochs 48 --target 0.9375

RUN is the folder a `snakemake ... results/figures/all` ran in (its params.yaml, prepared data,
pruned and dense models and results/metrics.csv are read; nothing there is written). Every (seed,
method, loss) of the experiment at the target is fine-tuned with the experiment's own settings as
its jobs saw them (params.yaml and --configfile, validated: loss, PW settings, weight decay,
numerics), except the epochs, the learning rate and the batch size given here, after the job's own
set-up (threads, deterministic mode, seeds), by the same function the fine-tuning jobs call
(pwprune.stages.finetune.finetune_stage, the losses of each loss label by pwprune.config), one after
the other in this process, into a temporary folder. Printed: per run, its time and drops; each
cell's verdict by the summary's criterion (pwprune.convergence.cell_verdicts), how many runs' own
logs would warn, and per method and loss the majority's drop and the minority's extra drop from each
seed's dense model (test split, accuracies as the evaluation computes them:
pwprune.metrics.checkpoint_rows; mean ± sd over seeds), beside the run's own fine-tuned models
(metrics.csv: the change of the extra drop, paired by seed, with its p and minimal detectable
difference), and the paired PW − CE difference with its minimal detectable difference.
docs/convergence.md ("Is 12 epochs enough?", "Is 24 epochs enough?") quotes its figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the folder of a finished run")
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--target", type=float, required=True, help="a target reduction of the run, e.g. 0.9375")
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--lr", type=float, help="default: the experiment's finetune.lr")
    ap.add_argument("--batch-size", type=int, help="default: the experiment's finetune.batch_size")
    ap.add_argument("--seeds", type=int, nargs="*", help="default: the experiment's seeds")
    ap.add_argument(
        "--configfile",
        type=Path,
        help="the --configfile=FILE the run was started with (its experiments extend params.yaml's)",
    )
    args = ap.parse_args(argv)

    import pandas as pd
    from scipy.stats import ttest_rel
    from snakemake.utils import update_config

    from pwprune.config import load_yaml_strict, numerics, phase_losses, pw_settings, target_str, validate
    from pwprune.convergence import IMPROVING, cell_verdicts, curve_rows, group_verdicts
    from pwprune.metrics import checkpoint_rows
    from pwprune.outputs import checkpoint_outputs
    from pwprune.power import minimal_detectable_difference
    from pwprune.stages.finetune import finetune_stage
    from pwprune.stages.inputs import setup

    # the run's configuration as its jobs saw it: params.yaml, the --configfile merged over it as
    # Snakemake merges it, validated (variants' inherited keys and every default filled in)
    config = load_yaml_strict(args.run / "params.yaml")
    if args.configfile:
        update_config(config, load_yaml_strict(args.configfile))
    if args.experiment not in config["experiments"]:
        sys.exit(
            f"experiment {args.experiment!r} is not in {args.run / 'params.yaml'}; "
            f"valid: {', '.join(config['experiments'])}"
        )
    exp = validate(config, args.run / "workflow/schemas/params.schema.yaml", cuda_available=False)["experiments"][
        args.experiment
    ]
    loop = {**exp["finetune"], "epochs": args.epochs}
    if args.lr is not None:
        loop["lr"] = args.lr
    if args.batch_size is not None:
        loop["batch_size"] = args.batch_size
    job_numerics = numerics(exp, "finetune", "cpu")
    owner = exp.get("variant_of") or args.experiment  # a variant prunes its base's data and dense models
    results = args.run / "results" / args.experiment
    data = args.run / "data" / "prepared" / owner
    if not results.is_dir() or not data.is_dir():
        sys.exit(f"{args.run}: no results/{args.experiment} or data/prepared/{owner}; run the workflow there first")
    metrics = pd.read_csv(args.run / "results" / "metrics.csv", dtype={"group": str})
    dense = metrics[(metrics.experiment == args.experiment) & (metrics.stage == "dense") & (metrics.split == "test")]
    dense = dense.drop_duplicates(["seed", "group"]).set_index(["seed", "group"])["accuracy"]
    seeds = args.seeds if args.seeds else exp["seeds"]
    curves, drops, extra, warned, runs = [], {}, {}, 0, 0
    for seed in seeds:
        for method in exp["prune"]["methods"]:
            for loss in exp["losses"]:
                start = time.perf_counter()
                prune_loss, finetune_loss = phase_losses(loss, method)
                finetune = {"loop": loop, "loss": finetune_loss}
                if finetune_loss.startswith("pw"):
                    finetune["pw"] = pw_settings(exp, method)
                # the fine-tuning job's own set-up: threads, deterministic mode, seeds
                device = setup(job_numerics, job_numerics["threads"], "cpu", seed, log=lambda *a: None)
                pruned = results / f"seed{seed}" / "pruned" / f"{method}-{prune_loss}" / target_str(args.target)
                dense_dir = args.run / "results" / owner / f"seed{seed}" / "dense"
                with tempfile.TemporaryDirectory() as tmp:
                    out = {k: f"{tmp}/{k}" for k in ("model", "shares", "history")}
                    finetune_stage(
                        data,
                        pruned / "model.pt",
                        dense_dir / "model.pt",
                        dense_dir / "teacher.pt",
                        finetune,
                        seed,
                        device,
                        f"seed {seed} {method} {loss}",
                        out,
                        log=lambda *a: None,
                        numerics=job_numerics,
                    )
                    history = json.loads(Path(out["history"]).read_text())
                    outputs = checkpoint_outputs(out["model"], data, 512, device, log=lambda *a: None)
                # the test split's per-group accuracy as the evaluation computes it (metrics.csv)
                acc = {r["group"]: r["accuracy"] for r in checkpoint_rows(outputs) if r["split"] == "test"}
                acc.pop("all", None)
                d = drops[(method, loss, seed)] = {n: dense.loc[(seed, n)] - a for n, a in acc.items()}
                major, minor = list(d)[0], list(d)[-1]  # the evaluation's group order: majority first
                extra[(method, loss, seed)] = 100 * (d[minor] - d[major])
                curves += curve_rows(
                    history,
                    {
                        "experiment": args.experiment,
                        "method": method,
                        "loss": loss,
                        "target_reduction": args.target,
                        "seed": seed,
                    },
                )
                warned += sum(v["status"] == IMPROVING for v in group_verdicts(history))
                runs += 1
                print(
                    f"seed {seed} {method} {loss}: {time.perf_counter() - start:.1f} s; {major}'s drop "
                    f"{100 * d[major]:.1f} pp, {minor}'s extra drop {extra[(method, loss, seed)]:.1f} pp",
                    flush=True,
                )
    verdicts = cell_verdicts(pd.DataFrame(curves))
    print(
        f"\n{args.experiment} at {args.target}, {args.epochs} epochs, batch {loop['batch_size']}, "
        f"lr {loop['lr']}, {len(seeds)} seeds"
    )
    for r in verdicts.itertuples(index=False):
        print(
            f"  {r.method}/{r.loss}/{r.group}: gain of the last quarter {100 * r.gain_mean:+.1f} "
            f"± {100 * r.gain_sd:.1f} pp, "
            f"tolerance {100 * r.tolerance:.1f} pp: {r.status}"
        )
    print(f"  runs whose own log would warn: {warned} group(s) in {runs} runs")

    def sd(values):
        return statistics.stdev(values) if len(values) > 1 else float("nan")

    # the run's own fine-tuned models, same seeds and target: what the new schedule changes
    tuned = metrics[
        (metrics.experiment == args.experiment)
        & (metrics.stage == "finetuned")
        & (metrics.split == "test")
        & ((metrics.target_reduction.astype(float) - args.target).abs() < 1e-9)
    ]
    own = tuned.drop_duplicates(["method", "loss", "seed", "group"]).set_index(["method", "loss", "seed", "group"])
    own = own["accuracy"]
    before = f"{exp['finetune']['epochs']} epochs, batch {exp['finetune']['batch_size']}"
    for method in exp["prune"]["methods"]:
        for loss in exp["losses"]:
            maj = [100 * drops[(method, loss, s)][major] for s in seeds]
            ex = [extra[(method, loss, s)] for s in seeds]
            print(
                f"  {method} {loss}: {major}'s drop {statistics.mean(maj):.1f} ± {sd(maj):.1f} pp, "
                f"{minor}'s extra drop {statistics.mean(ex):.1f} ± {sd(ex):.1f} pp"
            )
            own_drop = {
                s: {g: dense.loc[(s, g)] - own.loc[(method, loss, s, g)] for g in (major, minor)} for s in seeds
            }
            own_maj = [100 * own_drop[s][major] for s in seeds]
            own_ex = [100 * (own_drop[s][minor] - own_drop[s][major]) for s in seeds]
            change = [a - b for a, b in zip(ex, own_ex)]
            if len(seeds) > 1 and any(change):
                test = (
                    f", paired p {ttest_rel(ex, own_ex).pvalue:.3g}, minimal detectable difference "
                    f"{minimal_detectable_difference(sd(change), len(change)):.1f} pp"
                )
            elif not any(change):
                test = " (every seed's as the run's: the same schedule reproduces the run)"
            else:
                test = ""
            print(
                f"    the run's own ({before}): {major}'s drop {statistics.mean(own_maj):.1f} pp, {minor}'s "
                f"extra drop {statistics.mean(own_ex):.1f} pp; change of the extra drop "
                f"{statistics.mean(change):+.1f} ± {sd(change):.1f} pp{test}"
            )
        if {"ce", "pw"} <= set(exp["losses"]):
            diff = [extra[(method, "pw", s)] - extra[(method, "ce", s)] for s in seeds]
            spread = sd(diff)
            print(
                f"  {method} PW − CE of the extra drop: {statistics.mean(diff):+.1f} ± {spread:.1f} pp, "
                f"minimal detectable difference {minimal_detectable_difference(spread, len(diff)):.1f} pp"
            )


if __name__ == "__main__":
    main()
