"""Would more fine-tuning change a finished run's drops? Fine-tune a completed run's pruned models
again with another schedule and print the convergence diagnostic and the drops it gives.

    python benchmarks/finetune_epochs.py RUN --epochs 48 --target 0.9375

RUN is the folder a `snakemake ... results/figures/all` ran in (its params.yaml, prepared data,
pruned and dense models and results/metrics.csv are read; nothing there is written). Every (seed,
method, loss) of the experiment at the target is fine-tuned with the experiment's own settings
(loss, PW settings, batch, weight decay, numerics), except the epochs and the learning rate given
here, by the same function the fine-tuning jobs call (pwprune.stages.finetune.finetune_stage, the
losses of each loss label by pwprune.config), one after the other in this process, into a temporary
folder. Printed: each cell's verdict by the summary's criterion (pwprune.convergence.cell_verdicts),
how many runs' own logs would warn, and per method and loss the majority's drop and the minority's
extra drop from each seed's dense model (test split, mean ± sd over seeds), with the paired PW − CE
difference and its minimal detectable difference. docs/convergence.md ("Is 24 epochs enough?")
quotes its figures.
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
    ap.add_argument("--seeds", type=int, nargs="*", help="default: the experiment's seeds")
    ap.add_argument(
        "--configfile",
        type=Path,
        help="the --configfile=FILE the run was started with (its experiments extend params.yaml's)",
    )
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    import yaml

    from pwprune.config import phase_losses, pw_settings
    from pwprune.convergence import IMPROVING, cell_verdicts, curve_rows, group_verdicts
    from pwprune.outputs import checkpoint_outputs
    from pwprune.power import minimal_detectable_difference
    from pwprune.stages.finetune import finetune_stage
    from pwprune.train import defer_dynamo

    defer_dynamo()
    torch.set_num_threads(1)
    params = yaml.safe_load((args.run / "params.yaml").read_text())["experiments"]
    if args.configfile:
        params.update(yaml.safe_load(args.configfile.read_text()).get("experiments") or {})
    if args.experiment not in params:
        sys.exit(f"experiment {args.experiment!r} is not in {args.run / 'params.yaml'}; valid: {', '.join(params)}")
    exp = params[args.experiment]
    base = params.get(exp.get("variant_of"), {}) if exp.get("variant_of") else {}
    exp = {**base, **exp}
    loop = {**exp["finetune"], "epochs": args.epochs}
    if args.lr is not None:
        loop["lr"] = args.lr
    numerics = {"channels_last": bool(exp.get("channels_last", False)), "precision": exp.get("precision", "fp32")}
    results = args.run / "results" / args.experiment
    data = args.run / "data" / "prepared" / args.experiment
    if not results.is_dir() or not data.is_dir():
        sys.exit(
            f"{args.run}: no results/{args.experiment} or data/prepared/{args.experiment}; run the workflow there first"
        )
    metrics = pd.read_csv(args.run / "results" / "metrics.csv", dtype={"group": str})
    dense = metrics[(metrics.experiment == args.experiment) & (metrics.stage == "dense") & (metrics.split == "test")]
    dense = dense.drop_duplicates(["seed", "group"]).set_index(["seed", "group"])["accuracy"]
    seeds = args.seeds if args.seeds else exp["seeds"]
    curves, drops, warned, runs = [], {}, 0, 0
    for seed in seeds:
        for method in exp["prune"]["methods"]:
            for loss in exp["losses"]:
                start = time.perf_counter()
                prune_loss, finetune_loss = phase_losses(loss, method)
                finetune = {"loop": loop, "loss": finetune_loss}
                if finetune_loss.startswith("pw"):
                    finetune["pw"] = pw_settings(exp, method)
                with tempfile.TemporaryDirectory() as tmp:
                    out = {k: f"{tmp}/{k}" for k in ("model", "shares", "history")}
                    seed_dir = results / f"seed{seed}"
                    finetune_stage(
                        data,
                        seed_dir / "pruned" / f"{method}-{prune_loss}" / str(args.target) / "model.pt",
                        seed_dir / "dense" / "model.pt",
                        seed_dir / "dense" / "teacher.pt",
                        finetune,
                        seed,
                        torch.device("cpu"),
                        f"seed {seed} {method} {loss}",
                        out,
                        log=lambda *a: None,
                        numerics=numerics,
                    )
                    history = json.loads(Path(out["history"]).read_text())
                    test = checkpoint_outputs(out["model"], data, 512, torch.device("cpu"), log=lambda *a: None)
                test = test["splits"]["test"]
                names = [str(n) for n in test.get("group_names", [])] or sorted(
                    {g["group"] for g in history[-1]["val"]["groups"]}
                )
                pred = np.asarray(test["logits"]).argmax(1)
                y, g = np.asarray(test["y"]), np.asarray(test["g"])
                acc = {names[k]: float((pred == y)[g == k].mean()) for k in range(len(names))}
                drops[(method, loss, seed)] = {n: dense.loc[(seed, n)] - a for n, a in acc.items()}
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
                print(f"seed {seed} {method} {loss}: {time.perf_counter() - start:.1f} s", flush=True)
    verdicts = cell_verdicts(pd.DataFrame(curves))
    print(f"\n{args.experiment} at {args.target}, {args.epochs} epochs, lr {loop['lr']}, {len(seeds)} seeds")
    for r in verdicts.itertuples(index=False):
        print(
            f"  {r.method}/{r.loss}/{r.group}: gain of the last quarter {100 * r.gain_mean:+.1f} "
            f"± {100 * r.gain_sd:.1f} pp, "
            f"tolerance {100 * r.tolerance:.1f} pp: {r.status}"
        )
    print(f"  runs whose own log would warn: {warned} group(s) in {runs} runs")

    def sd(values):
        return statistics.stdev(values) if len(values) > 1 else float("nan")

    groups = list(next(iter(drops.values())))
    major, minor = groups[0], groups[-1]
    extra = {k: 100 * (d[minor] - d[major]) for k, d in drops.items()}
    for method in exp["prune"]["methods"]:
        for loss in exp["losses"]:
            maj = [100 * drops[(method, loss, s)][major] for s in seeds]
            ex = [extra[(method, loss, s)] for s in seeds]
            print(
                f"  {method} {loss}: {major}'s drop {statistics.mean(maj):.1f} ± {sd(maj):.1f} pp, "
                f"{minor}'s extra drop {statistics.mean(ex):.1f} ± {sd(ex):.1f} pp"
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
