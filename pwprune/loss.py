"""The performance weighted (PW) loss of Meyer & Wong, and the dense-model ("teacher") outputs it
is computed against.

PW loss = cross-entropy with two changes, both derived from the unpruned model:
  * sample weights  w = m + (1 - m) * (1 - s) ** gamma, s = teacher's probability of the true
    label, so samples the dense model finds hard keep full weight and easy ones drop to m;
  * target correction: where the teacher is right the target is its soft output, where it is
    wrong the hard label.
The batch loss is the plain mean of the weighted per-sample losses (not divided by the weight
sum), as in the paper.

Binary tasks use one logit: `logits` (N,) or (N, 1), `targets` float in {0, 1} (int and bool
0/1 are accepted too and converted). Multi-class: `logits` (N, C), `targets` integer (N,).
"""

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwprune.names import LOSS_KINDS

REDUCTIONS = ("mean", "sum", "none")
# (reweight, correct_targets) of each loss kind, keyed as pwprune.names.LOSS_KINDS (tests check)
SWITCHES = {"ce": (False, False), "pw": (True, True), "pw_weight": (True, False), "pw_correct": (False, True)}


def _is_binary(logits: torch.Tensor) -> bool:
    return logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, C) class probabilities: softmax, or [1 - p, p] for a single logit."""
    if _is_binary(logits):
        p = torch.sigmoid(logits.reshape(-1))
        return torch.stack([1 - p, p], dim=1)
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (N,), (N, 1) or (N, C), got {tuple(logits.shape)}")
    return torch.softmax(logits, dim=1)


class PerformanceWeightedLoss(nn.Module):
    """PW loss; called as `loss(logits, teacher_logits, targets)` like nn.CrossEntropyLoss.

    reweight=False, correct_targets=False is exactly cross-entropy (the teacher is ignored and
    may be None); each switch alone is one of the paper's ablations. With reduction="none" the
    result has shape (N,) for binary and multi-class alike. No gradient reaches the teacher.

    soft_targets=True (exclusive with correct_targets) makes every sample's target the teacher's
    soft output, right or wrong: plain distillation, which the authors' AutoBot trains its gates
    on when it does not correct targets (pwprune.pruning.autobot, option plain_targets).
    """

    def __init__(
        self,
        min_weight: float = 0.75,
        gamma: float = 5.0,
        reweight: bool = True,
        correct_targets: bool = True,
        reduction: str = "mean",
        soft_targets: bool = False,
    ):
        super().__init__()
        if not 0.0 <= float(min_weight) <= 1.0:
            raise ValueError(f"min_weight must be in [0, 1], got {min_weight}")
        if not float(gamma) >= 0.0:  # also rejects NaN
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.min_weight = float(min_weight)
        self.gamma = float(gamma)
        self.reweight = bool(reweight)
        self.correct_targets = bool(correct_targets)
        self.soft_targets = bool(soft_targets)
        if self.soft_targets and self.correct_targets:
            raise ValueError(
                "soft_targets and correct_targets are exclusive: the target is either the "
                "teacher's output everywhere or only where the teacher is right"
            )
        self.reduction = reduction

    def extra_repr(self) -> str:
        return (
            f"min_weight={self.min_weight}, gamma={self.gamma}, reweight={self.reweight}, "
            f"correct_targets={self.correct_targets}, reduction={self.reduction!r}"
            + (", soft_targets=True" if self.soft_targets else "")
        )

    @property
    def needs_teacher(self) -> bool:
        return self.reweight or self.correct_targets or self.soft_targets

    def forward(self, logits: torch.Tensor, teacher_logits: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
            raise ValueError("logits must be a floating point tensor")
        binary = _is_binary(logits)
        if not binary and logits.ndim != 2:
            raise ValueError(f"logits: expected shape (N,), (N, 1) or (N, C), got {tuple(logits.shape)}")
        n = logits.shape[0]
        targets = _check_targets(targets, n, binary, None if binary else logits.shape[1])
        teacher = None
        if self.needs_teacher:
            teacher = _check_teacher(teacher_logits, logits, binary)
        if binary:
            per_sample = self._binary(logits.reshape(-1), teacher, targets)
        else:
            per_sample = self._multiclass(logits, teacher, targets)
        if self.reduction == "mean":
            return per_sample.mean()
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample

    def _binary(self, x, teacher, y):
        if teacher is None:
            return F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p = torch.sigmoid(teacher.reshape(-1).to(x.dtype))
        target = y
        if self.correct_targets:
            # (p > 0.5) is the same tie-break as argmax over [1 - p, p]
            teacher_right = (p > 0.5) == (y > 0.5)
            target = torch.where(teacher_right, p, y)
        elif self.soft_targets:
            target = p
        loss = F.binary_cross_entropy_with_logits(x, target, reduction="none")
        if self.reweight:
            s = p * y + (1 - p) * (1 - y)
            loss = loss * self.sample_weights(s)
        return loss

    def _multiclass(self, logits, teacher, y):
        if teacher is None:
            return F.cross_entropy(logits, y, reduction="none")
        probs = torch.softmax(teacher.to(logits.dtype), dim=1)
        if self.correct_targets:
            teacher_right = probs.argmax(dim=1) == y
            onehot = F.one_hot(y, logits.shape[1]).to(probs.dtype)
            target = torch.where(teacher_right[:, None], probs, onehot)
            loss = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)
        elif self.soft_targets:
            loss = -(probs * F.log_softmax(logits, dim=1)).sum(dim=1)
        else:
            loss = F.cross_entropy(logits, y, reduction="none")
        if self.reweight:
            s = probs.gather(1, y[:, None]).squeeze(1)
            loss = loss * self.sample_weights(s)
        return loss

    def sample_weights(self, s: torch.Tensor) -> torch.Tensor:
        """The PW weight of samples whose true label the teacher gives probability s."""
        m = self.min_weight
        return m + (1 - m) * (1 - s) ** self.gamma


def _check_targets(targets, n, binary, num_classes):
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}")
    if binary and targets.ndim == 2 and targets.shape[1] == 1:
        targets = targets.reshape(-1)
    if targets.ndim != 1 or targets.shape[0] != n:
        raise ValueError(f"targets: expected shape ({n},) to match logits, got {tuple(targets.shape)}")
    if binary:
        if targets.is_complex():
            raise ValueError(f"targets: expected float/int/bool 0/1 labels, got dtype {targets.dtype}")
        if not ((targets == 0) | (targets == 1)).all():
            raise ValueError("targets: binary labels must be 0 or 1")
        return targets.float() if not targets.is_floating_point() else targets
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"targets: expected integer class labels (int64), got dtype {targets.dtype}")
    targets = targets.long()
    if n and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"targets: labels must be in [0, {num_classes}), got range [{int(targets.min())}, {int(targets.max())}]"
        )
    return targets


def _check_teacher(teacher_logits, logits, binary):
    if teacher_logits is None:
        raise ValueError(
            "teacher_logits is None, but reweight or correct_targets needs the dense "
            "model's logits (or switch both off for plain cross-entropy)"
        )
    if not isinstance(teacher_logits, torch.Tensor) or not teacher_logits.is_floating_point():
        raise ValueError("teacher_logits must be a floating point tensor")
    ok = (
        (_is_binary(teacher_logits) and teacher_logits.shape[0] == logits.shape[0])
        if binary
        else teacher_logits.shape == logits.shape
    )
    if not ok:
        raise ValueError(
            f"teacher_logits: shape {tuple(teacher_logits.shape)} does not match logits {tuple(logits.shape)}"
        )
    teacher_logits = teacher_logits.detach()
    if not torch.isfinite(teacher_logits).all():
        raise ValueError("teacher_logits contain NaN or inf; the dense model's outputs are broken")
    return teacher_logits.to(logits.device)


def make_loss(
    kind: str, min_weight: float = 0.75, gamma: float = 5.0, reduction: str = "mean"
) -> PerformanceWeightedLoss:
    """The loss for a config label: ce, pw, pw_weight (reweight only), pw_correct (correction only)."""
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind must be one of {LOSS_KINDS}, got {kind!r}")
    reweight, correct = SWITCHES[kind]
    return PerformanceWeightedLoss(min_weight, gamma, reweight=reweight, correct_targets=correct, reduction=reduction)


@torch.no_grad()
def teacher_outputs(model: nn.Module, loader, device="cpu") -> torch.Tensor:
    """Dense-model logits for a whole split, row i = sample with idx i (float32, on CPU).

    Uses the idx of every (x, y, g, idx) batch, so a shuffling loader is fine; every index in
    [0, len(dataset)) must appear exactly once. The model is moved to `device`; its train/eval
    mode is restored afterwards.
    """
    from pwprune.rows import RowBuffer, expected_rows

    was_training = model.training
    model.to(device).eval()
    try:
        rows, idxs = RowBuffer(expected_rows(loader)), RowBuffer(expected_rows(loader))
        for x, _, _, idx in loader:
            rows.append(model(x.to(device)).float().cpu())
            idxs.append(idx.cpu().long())
    finally:
        model.train(was_training)
    if not len(rows):
        raise ValueError("loader yielded no batches")
    idx = idxs.tensor()
    n = len(loader.dataset) if hasattr(loader, "dataset") else int(idx.max()) + 1
    # a sampler that skips or repeats samples would leave rows undefined: refuse instead
    if idx.numel() != n or not torch.equal(torch.sort(idx).values, torch.arange(n)):
        raise ValueError(
            f"loader: sample indices must cover 0..{n - 1} exactly once "
            f"(got {idx.numel()} indices); use drop_last=False and no subset sampler"
        )
    rows = rows.tensor()
    out = torch.empty_like(rows)
    out[idx] = rows
    return out


class CachedTeacher:
    """teacher(x, idx) -> precomputed logits[idx]; for data without random augmentation."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits.detach()

    def __call__(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.logits.device != x.device:  # move the cache once, not every batch
            self.logits = self.logits.to(x.device)
        return self.logits[idx.to(x.device)]


class FrozenTeacher:
    """teacher(x, idx) -> dense model's logits on x, from a frozen eval-mode copy; for augmented
    data, where each batch's images differ from any cached ones. idx is ignored."""

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        p = next(self.model.parameters(), None)
        if p is not None and p.device != x.device:
            self.model.to(x.device)
        return self.model(x)
