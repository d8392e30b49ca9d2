"""Had the learning rate annealed by the end of fine-tuning? What a "converged" verdict can say.

The convergence diagnostic (pwprune.convergence) asks whether a group's validation accuracy was
still rising over the last quarter of fine-tuning. Under a schedule that anneals the learning rate
towards zero (cosine), every curve flattens at its end whatever the model has recovered, so a
"converged" verdict there says that this schedule had finished, not that a longer one would leave
the drops as they are. On the earlier default (docs/convergence.md, "Is 24 epochs enough?") every
cell read converged after 24 cosine epochs, and sixteen times the steps still halved CE's minority
extra drop at 93.75 %; on the current one twice the epochs lower random's at 87.5 % from 7.0 to
4.2 pp ("Is 12 epochs enough?"). This module finds the cells whose runs had annealed, for a note beside the
verdicts in results/summary.md; the check that answers the question is a longer schedule on the
same pruned models (benchmarks/finetune_epochs.py).

It reaches only the aggregation (the "lr" column of results/convergence.csv) and the summary.
"""

from __future__ import annotations

import math

from pwprune.convergence import CELL_KEYS, CONVERGED, CURVE_COLUMNS

ANNEALED = 0.1  # a run whose last epoch's learning rate is below a tenth of its peak has annealed
# results/convergence.csv: the curves of pwprune.convergence plus each epoch's learning rate
CURVE_COLUMNS_WITH_LR = (*CURVE_COLUMNS, "lr")


def with_lr(rows, history):
    """Curve rows of one run (pwprune.convergence.curve_rows) with "lr": the learning rate its
    history recorded for the row's epoch (the head's, pwprune.train.fit's "lr"); nan where the
    history has none."""
    by_epoch = {int(h.get("epoch", i + 1)): h.get("lr") for i, h in enumerate(history)}
    out = []
    for r in rows:
        lr = by_epoch.get(int(r["epoch"]))
        out.append({**r, "lr": float(lr) if lr is not None else math.nan})
    return out


def end_lr_ratios(curves):
    """Per cell (CELL_KEYS): "end_lr_ratio", the mean over its runs of the learning rate of the
    run's last validated epoch over the run's highest one. Empty (with those columns) when the
    curves have no "lr" column or no finite learning rate."""
    import numpy as np
    import pandas as pd

    columns = [*CELL_KEYS, "end_lr_ratio"]
    if "lr" not in curves.columns:
        return pd.DataFrame(columns=columns)
    curves = curves[np.isfinite(curves["lr"].astype(float))]
    out = []
    for key, cell in curves.groupby(CELL_KEYS, sort=True):
        ratios = []
        for _, run in cell.groupby("seed", sort=True):
            lr = run.sort_values("epoch")["lr"].astype(float).tolist()
            if max(lr) > 0:
                ratios.append(lr[-1] / max(lr))
        if ratios:
            out.append({**dict(zip(CELL_KEYS, key)), "end_lr_ratio": float(np.mean(ratios))})
    return pd.DataFrame(out, columns=columns)


def summary_note(curves, verdicts):
    """The note under the summary's convergence table (a list of one markdown paragraph, or [])
    when converged cells of `verdicts` (pwprune.convergence.cell_verdicts) had annealed their
    learning rate below ANNEALED of its peak by their last epoch (end_lr_ratios of `curves`)."""
    ratios = end_lr_ratios(curves)
    if not len(ratios) or not len(verdicts):
        return []
    converged = verdicts[verdicts["status"] == CONVERGED]
    keyed = converged.merge(ratios, on=CELL_KEYS, how="inner")
    annealed = keyed[keyed["end_lr_ratio"] < ANNEALED]
    if not len(annealed):
        return []
    return [
        f"**Note** (the schedule): {len(annealed)} of the {len(converged)} converged cells ended with a "
        f"learning rate annealed below {ANNEALED:g} of its peak (at the last epoch, "
        f"{100 * float(annealed['end_lr_ratio'].median()):.2g} % of it, median over those cells). Under "
        "such a schedule (cosine) every curve flattens at its end whatever the model has recovered, so "
        "*converged* there says that the schedule had finished, not that a longer one would leave the drops "
        "as they are. To find out, fine-tune the same pruned models with a longer schedule "
        "(`python benchmarks/finetune_epochs.py RUN --epochs 2E --target T`; docs/convergence.md, "
        '"Is 12 epochs enough?").'
    ]
