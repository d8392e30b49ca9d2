"""CEAG: constrained excess-accuracy-gap fine-tuning (Hashemizadeh et al., "Balancing Act:
Constraining Disparate Impact in Sparse Models", ICLR 2024).

One inequality constraint per sensitive group g bounds how much more accuracy g loses, relative
to the dense model, than the whole data does:

    psi_g = (A_dense_g - A_g) - (A_dense - A) <= epsilon

It is solved on the Lagrangian  CE + sum_g lambda_g * surrogate_g  with one multiplier per
group, lambda_g >= 0. Accuracy has no gradient, so (as the authors do, a "proxy-Lagrangian") the
model descends a differentiable surrogate of each constraint: the same gap measured in
cross-entropy, (L_g - L_dense_g) - (L - L_dense), whose gradient is that of L_g - L (the dense
terms are constants). The multipliers ascend the true, non-differentiable violation:

    lambda_g <- max(0, lambda_g + dual_lr * (psi_g(batch) - epsilon))

for the groups present in the batch (the others keep their multiplier), one step after each
primal step (simultaneous gradient descent-ascent). A_g and A are the model's accuracies on the
batch; A_dense_g and A_dense are the dense model's accuracies over the whole training split
(`set_baseline`, from the cached teacher outputs), or, when no baseline is set, on the same batch
from the teacher's logits (the on-the-fly teacher of augmented data).

A small Lagrangian of our own, not cooper-optim: cooper's optimiser owns the primal step
(`roll()` runs the model, the primal and the dual optimiser in one call), which would replace
pwprune.train.fit's loop (GradScaler, resume, divergence handling); the dual arithmetic is five
lines, tested in tests/test_ceag.py. See docs/fair-baselines.md, section CEAG.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


def _predictions(logits: torch.Tensor) -> torch.Tensor:
    if logits.ndim == 1 or logits.shape[1] == 1:
        return (logits.reshape(-1) > 0).long()
    return logits.argmax(1)


def _per_sample_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if logits.ndim == 1 or logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), targets.float(), reduction="none")
    return F.cross_entropy(logits, targets.long(), reduction="none")


def group_accuracy(correct: torch.Tensor, groups: torch.Tensor, num_groups: int):
    """(overall accuracy, per-group accuracy (NaN for a group with no sample), per-group count)
    of a 0/1 `correct` vector."""
    correct = correct.double()
    counts = torch.bincount(groups, minlength=num_groups).double()
    hits = torch.zeros(num_groups, dtype=torch.float64, device=correct.device).index_add_(0, groups, correct)
    per_group = torch.where(counts > 0, hits / counts.clamp(min=1), torch.full_like(hits, math.nan))
    return correct.mean(), per_group, counts


def excess_gaps(dense_acc, dense_group_acc, acc, group_acc) -> torch.Tensor:
    """psi_g = (A_dense_g - A_g) - (A_dense - A), per group (NaN where a group is undefined)."""
    return (dense_group_acc - group_acc) - (dense_acc - acc)


def dual_ascent(multipliers: torch.Tensor, violations: torch.Tensor, dual_lr: float) -> torch.Tensor:
    """One projected gradient-ascent step of the multipliers: max(0, lambda + dual_lr * v) where v
    is finite; a NaN violation (group absent or without a baseline) leaves its multiplier."""
    seen = torch.isfinite(violations)
    stepped = (multipliers + dual_lr * torch.nan_to_num(violations, nan=0.0)).clamp(min=0.0)
    return torch.where(seen, stepped, multipliers)


class CEAGLoss(nn.Module):
    """The CEAG Lagrangian as a loss for pwprune.train.fit, called as
    `loss(logits, teacher_logits, targets, groups=g)` (it declares `needs_groups`).

    Per sample i of group g_i in a batch of N with n_g samples per group, the value is
    ce_i * (1 + lambda_{g_i} * N / n_{g_i} - sum_{g present} lambda_g), whose mean is exactly
    CE + sum_g lambda_g (L_g - L): the Lagrangian's gradient. Multipliers are buffers (saved in
    the resume state); `dual_step()` applies the pending ascent step of the last forward call in
    training mode; `epoch_record()` returns and resets the epoch's log.
    """

    needs_groups = True
    reweight = False
    correct_targets = False

    def __init__(self, num_groups: int, epsilon: float = 0.01, dual_lr: float = 0.01, reduction: str = "mean"):
        super().__init__()
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"ceag: num_groups must be a positive integer, got {num_groups!r}")
        if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and 0.0 <= epsilon <= 1.0):
            raise ValueError(
                f"ceag: epsilon (the tolerance on the excess accuracy gap) must be in [0, 1], got {epsilon!r}"
            )
        if not (isinstance(dual_lr, (int, float)) and not isinstance(dual_lr, bool) and 0.0 < dual_lr < math.inf):
            raise ValueError(f"ceag: dual_lr (the multipliers' step size) must be a number > 0, got {dual_lr!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.num_groups, self.epsilon, self.dual_lr, self.reduction = (
            num_groups,
            float(epsilon),
            float(dual_lr),
            reduction,
        )
        self.register_buffer("multipliers", torch.zeros(num_groups, dtype=torch.float64))
        self.register_buffer("dense_accuracy", torch.tensor(math.nan, dtype=torch.float64))
        self.register_buffer("dense_group_accuracy", torch.full((num_groups,), math.nan, dtype=torch.float64))
        # the epoch's training predictions (for the logged violation) and the pending dual step
        self.register_buffer("epoch_hits", torch.zeros(num_groups, dtype=torch.float64))
        self.register_buffer("epoch_counts", torch.zeros(num_groups, dtype=torch.float64))
        self.register_buffer("epoch_dense_hits", torch.zeros(num_groups, dtype=torch.float64))
        self._pending = None

    def extra_repr(self) -> str:
        return (
            f"num_groups={self.num_groups}, epsilon={self.epsilon}, dual_lr={self.dual_lr}, "
            f"reduction={self.reduction!r}"
        )

    @property
    def has_baseline(self) -> bool:
        return bool(torch.isfinite(self.dense_accuracy))

    @property
    def needs_teacher(self) -> bool:
        """Without a whole-split baseline the dense accuracies come from each batch's teacher logits."""
        return not self.has_baseline

    def _check_groups(self, groups, n, device):
        if groups is None:
            raise ValueError(
                "ceag needs each batch's group labels: call loss(logits, teacher_logits, targets, groups=g)"
            )
        groups = torch.as_tensor(groups).to(device).long().reshape(-1)
        if groups.shape[0] != n:
            raise ValueError(f"groups: expected shape ({n},) to match logits, got {tuple(groups.shape)}")
        if n and (groups.min() < 0 or groups.max() >= self.num_groups):
            raise ValueError(
                f"groups: labels must be in [0, {self.num_groups}), "
                f"got range [{int(groups.min())}, {int(groups.max())}]"
            )
        return groups

    @torch.no_grad()
    def set_baseline(self, teacher_logits: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> None:
        """The dense model's overall and per-group accuracy over a whole split (its cached logits),
        the constant side of every constraint. A group absent from the split gets no constraint."""
        teacher_logits = torch.as_tensor(teacher_logits)
        groups = self._check_groups(groups, teacher_logits.shape[0], "cpu")
        correct = (_predictions(teacher_logits.cpu()) == torch.as_tensor(targets).cpu().long().reshape(-1)).double()
        acc, per_group, _ = group_accuracy(correct, groups, self.num_groups)
        self.dense_accuracy.copy_(acc)
        self.dense_group_accuracy.copy_(per_group)

    def forward(self, logits, teacher_logits, targets, groups=None):
        n = logits.shape[0]
        groups = self._check_groups(groups, n, logits.device)
        ce = _per_sample_ce(logits, targets)
        lam = self.multipliers.to(logits.device)
        counts = torch.bincount(groups, minlength=self.num_groups).to(ce.dtype)
        present = counts > 0
        weight = 1.0 + (lam[groups] * n / counts[groups]) - lam[present].sum()
        per_sample = ce * weight.to(ce.dtype)
        if self.training:
            with torch.no_grad():
                correct = (_predictions(logits.detach()) == targets.long().reshape(-1)).double()
                acc, group_acc, _ = group_accuracy(correct, groups, self.num_groups)
                if self.has_baseline:
                    dense_acc, dense_group = (
                        self.dense_accuracy.to(logits.device),
                        self.dense_group_accuracy.to(logits.device),
                    )
                    dense_correct = None
                else:
                    if teacher_logits is None:
                        raise ValueError(
                            "ceag: no dense baseline was set (set_baseline) and teacher_logits is None; "
                            "pass the dense model's logits"
                        )
                    dense_correct = (_predictions(teacher_logits.detach()) == targets.long().reshape(-1)).double()
                    dense_acc, dense_group, _ = group_accuracy(dense_correct, groups, self.num_groups)
                self._pending = excess_gaps(dense_acc, dense_group, acc, group_acc) - self.epsilon
                self.epoch_hits += torch.zeros_like(self.epoch_hits).index_add_(0, groups.cpu(), correct.cpu())
                self.epoch_counts += counts.detach().double().cpu()
                if dense_correct is not None:
                    self.epoch_dense_hits += torch.zeros_like(self.epoch_hits).index_add_(
                        0, groups.cpu(), dense_correct.cpu()
                    )
        if self.reduction == "mean":
            return per_sample.mean()
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample

    @torch.no_grad()
    def dual_step(self) -> None:
        """Apply the ascent step for the violations of the last training-mode forward call."""
        if self._pending is None:
            return
        self.multipliers.copy_(dual_ascent(self.multipliers, self._pending.to(self.multipliers), self.dual_lr))
        self._pending = None

    @torch.no_grad()
    def epoch_record(self) -> dict:
        """The epoch's log, then reset: the multipliers now, and each group's violation
        psi_g - epsilon over the epoch's training predictions (null for a group not seen)."""
        counts = self.epoch_counts
        acc = self.epoch_hits.sum() / counts.sum().clamp(min=1)
        group_acc = torch.where(counts > 0, self.epoch_hits / counts.clamp(min=1), torch.full_like(counts, math.nan))
        if self.has_baseline:
            dense_acc, dense_group = self.dense_accuracy, self.dense_group_accuracy
        else:
            dense_acc = self.epoch_dense_hits.sum() / counts.sum().clamp(min=1)
            dense_group = torch.where(
                counts > 0, self.epoch_dense_hits / counts.clamp(min=1), torch.full_like(counts, math.nan)
            )
        violation = excess_gaps(dense_acc, dense_group, acc, group_acc) - self.epsilon
        record = {
            "multipliers": [float(v) for v in self.multipliers.tolist()],
            "violations": [float(v) if math.isfinite(v) else None for v in violation.tolist()],
        }
        for buffer in (self.epoch_hits, self.epoch_counts, self.epoch_dense_hits):
            buffer.zero_()
        return record
