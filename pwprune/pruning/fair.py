"""Group-aware channel importance: FairGRAPE (Lin et al., ECCV 2022) and FairPrune (Wu et al.,
MICCAI 2022), mapped onto pwprune's flat channel layout (graph.Layout). docs/fair-baselines.md
states each paper's definition, this mapping and where it differs.

Both read the sensitive group of every training sample from the (x, y, g, idx) batches, and both
measure the model as it is, in eval mode, without changing a weight: BN normalises with its
running statistics, so every sample's gradient is its own (no coupling through batch statistics)
and equals what a one-sample forward would give.

  group_taylor      (channels, groups): per group, the mean over its samples of
                    |sum over the channel's coupled feature maps of activation x d loss_n/d activation|
  greedy_keep_order FairGRAPE's greedy selection on one such matrix: the order in which it keeps units
  group_fisher      (channels, groups): per group, the OBD saliency 1/2 theta^2 F of every parameter
                    (F the empirical Fisher, the mean over the group's samples of (d loss_n/d theta)^2),
                    summed over the parameters of each channel in every coupled layer
  group_weights     FairPrune's privileged group and the weights of the others, from dense accuracy

pwprune's losses are means over the batch, so a sample's own gradient is the batch's times its size.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .importance import ChannelHooks
from .loop import forward_loss


def draw_batches(data, count, method):
    """`count` batches of data.batch() (the training stream), checked for at least two groups."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{method} option batches must be an integer >= 1, got {count!r}")
    drawn = [data.batch() for _ in range(count)]
    groups = sorted({int(v) for b in drawn for v in b[2].tolist()})
    if len(groups) < 2:
        raise ValueError(
            f"{method} compares sensitive groups, but the {count} scored batch(es) hold samples of "
            f"group(s) {groups} only; raise the {method} option batches (or check the data's groups)"
        )
    return drawn, groups


def _single_logit(logits):
    return logits.dim() == 1 or logits.shape[-1] == 1


def true_label_view(logits, y):
    """(correct, probability of the true label) per sample, for single-logit binary or softmax outputs."""
    logits = logits.detach().float()
    if _single_logit(logits):
        p = torch.sigmoid(logits.reshape(-1))
        return (p > 0.5).long() == y, torch.where(y == 1, p, 1 - p)
    prob = torch.softmax(logits, -1)
    return prob.argmax(-1) == y, prob.gather(1, y.view(-1, 1)).view(-1)


class _GroupTally:
    """Per group: samples, correct predictions, summed true-label probability."""

    def __init__(self, groups):
        self.groups = groups
        self.n, self.correct, self.prob = (torch.zeros(len(groups), dtype=torch.float64) for _ in range(3))

    def add(self, logits, y, g):
        correct, prob = true_label_view(logits.cpu(), y.cpu())
        for k, gid in enumerate(self.groups):
            sel = g == gid
            self.n[k] += sel.sum()
            self.correct[k] += correct[sel].double().sum()
            self.prob[k] += prob[sel].double().sum()

    def accuracy(self):
        return (self.correct / self.n.clamp(min=1)).tolist()

    def mean_prob(self):
        return (self.prob / self.n.clamp(min=1)).tolist()


def group_taylor(model, layout, batches, groups, loss_fn, teacher, device, probe_sites=None):
    """(layout.total, len(groups)) per-group Taylor importance: column k is the mean over group k's
    samples of |sum over the channel's coupled feature maps (probe_sites, default layout.sites) of
    activation x d loss_n / d activation|, with loss_n the sample's own loss. Eval mode, no weight
    changes."""
    was_training = model.training
    model.eval()
    hooks = ChannelHooks(model, layout, "probe", probe_sites=probe_sites)
    total = torch.zeros(layout.total, len(groups), dtype=torch.float64)
    count = torch.zeros(len(groups), dtype=torch.float64)
    try:
        for batch in batches:
            loss = forward_loss(model, batch, loss_fn, teacher, device)
            model.zero_grad(set_to_none=True)
            loss.backward()
            g = batch[2].cpu()
            per_sample = hooks.taylor_samples().double().abs() * len(g)  # mean loss -> each sample's own
            for k, gid in enumerate(groups):
                sel = g == gid
                total[:, k] += per_sample[sel].sum(0)
                count[k] += sel.sum()
    finally:
        hooks.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return (total / count.clamp(min=1)).float()


def greedy_keep_order(importance):
    """FairGRAPE's greedy selection on an (n units, K groups) non-negative importance matrix ->
    the n unit indices in the order it keeps them (first = kept first).

    The target is each group's share of the total importance, importance.sum(0) / importance.sum().
    The kept set starts empty with shares taken as equal (1/K); at each step the group whose share
    of the kept set falls furthest below its target (argmin of share - target; ties: the lower
    group index) adds its most important unit not yet kept (ties: the lower unit index), and the
    shares are updated. The kept set after m steps is the first m entries, so ranking units by
    their position reproduces the selection for every m."""
    imp = importance.double().clamp(min=0).tolist()
    n = len(imp)
    if n == 0:
        return []
    k_groups = len(imp[0])
    col = [sum(row[k] for row in imp) for k in range(k_groups)]
    total = sum(col)
    target = [c / total for c in col] if total > 0 else [1.0 / k_groups] * k_groups
    orders = [sorted(range(n), key=lambda i, k=k: (-imp[i][k], i)) for k in range(k_groups)]
    ptr = [0] * k_groups
    kept = [False] * n
    sums = [0.0] * k_groups
    share = [1.0 / k_groups] * k_groups
    order = []
    while len(order) < n:
        k = min(range(k_groups), key=lambda j: (share[j] - target[j], j))
        while kept[orders[k][ptr[k]]]:
            ptr[k] += 1
        unit = orders[k][ptr[k]]
        kept[unit] = True
        order.append(unit)
        for j in range(k_groups):
            sums[j] += imp[unit][j]
        s = sum(sums)
        if s > 0:
            share = [v / s for v in sums]
    return order


def greedy_scores(layout, importance):
    """One score per flat channel: within each dependency group of the layout, (n - position) / n
    for its position in greedy_keep_order of the group's rows (1 = kept first). Every group's scores
    span the same range, so target.py's global ranking removes about the same fraction of each
    group, the last-kept first: FairGRAPE's layer-wise selection at one pruning ratio for all layers."""
    scores = torch.zeros(layout.total)
    for (_, n), off in zip(layout.groups, layout.offsets):
        order = greedy_keep_order(importance[off : off + n])
        pos = torch.empty(n)
        pos[torch.tensor(order, dtype=torch.long)] = torch.arange(n, dtype=torch.float)
        scores[off : off + n] = (n - pos) / n
    return scores


# ----------------------------------------------------------------------------------------------
# FairPrune


def _channel_params(m, role):
    """(parameter name, the axis its channels lie on) of module m for a layout role: "out" and
    "ch" (norms, depthwise convs) the weight's rows and the bias; "in" the weight's columns of a
    conv/linear (a bias belongs to its output channels only)."""
    if role == "in":
        return [("weight", 1)] if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) else []
    return [(p, 0) for p in ("weight", "bias") if getattr(m, p, None) is not None]


def channel_sums(layout, model, values):
    """Sum per-parameter values over each channel's parameters in every coupled layer.

    values: {(module name, parameter name): tensor shaped as the parameter}. A conv/linear
    weight element w[o, i] counts for output channel o (its group's "out" axis) and for input
    channel i (the "in" axis of the group that writes i), as magnitude_scores does."""
    out = torch.zeros(layout.total, dtype=torch.float64)
    modules = dict(model.named_modules())
    for (name, role), parts in layout.axes.items():
        for pname, dim in _channel_params(modules[name], role):
            v = values.get((name, pname))
            if v is None:
                continue
            v = v.detach().double().cpu()
            per_channel = v if v.dim() == 1 else v.transpose(0, dim).flatten(1).sum(1)
            for local, flat in parts:
                out.index_add_(0, flat, per_channel[local])
    return out


def layout_params(layout, model):
    """{(module name, parameter name): parameter} of every module on a layout axis."""
    modules = dict(model.named_modules())
    params = {}
    for name, role in layout.axes:
        for pname, _ in _channel_params(modules[name], role):
            p = getattr(modules[name], pname)
            if isinstance(p, nn.Parameter) and p.requires_grad:
                params[(name, pname)] = p
    return params


def group_fisher(model, layout, batches, groups, loss_fn, teacher, device):
    """-> (saliency (layout.total, len(groups)), group accuracy, group mean true-label probability).

    Column k: for every parameter theta of a channel's coupled layers, the OBD saliency
    1/2 theta^2 F_k(theta), with F_k the empirical Fisher (the mean over group k's samples of the
    squared gradient of the sample's own loss: the diagonal Hessian's usual approximation),
    summed per channel (channel_sums). Accuracy and probability come from the same forward
    passes: eval mode, the model as given. No weight changes."""
    params = layout_params(layout, model)
    keys, tensors = list(params), list(params.values())
    fisher = [[torch.zeros_like(t, dtype=torch.float64) for t in tensors] for _ in groups]
    tally = _GroupTally(groups)
    was_training = model.training
    model.eval()
    column = {gid: k for k, gid in enumerate(groups)}
    try:
        for x, y, g, idx in batches:
            xd, yd = x.to(device), y.to(device)
            t_logits = teacher(xd, idx).to(device) if teacher is not None else None
            for i in range(len(y)):  # one sample per pass: its own gradient, at one sample's cost
                sl = slice(i, i + 1)
                logits = model(xd[sl])
                tally.add(logits.detach(), y[sl], g[sl])
                target = yd[sl].float() if _single_logit(logits) else yd[sl]
                loss_i = loss_fn(logits, None if t_logits is None else t_logits[sl], target)
                grads = torch.autograd.grad(loss_i, tensors, allow_unused=True)
                for a, gr in zip(fisher[column[int(g[i])]], grads):
                    if gr is not None:
                        a += gr.detach().double() ** 2
    finally:
        model.train(was_training)
    n = tally.n.clamp(min=1)
    saliency = torch.zeros(layout.total, len(groups), dtype=torch.float64)
    for k in range(len(groups)):
        per_param = {key: 0.5 * t.detach().double() ** 2 * f / n[k] for key, t, f in zip(keys, tensors, fisher[k])}
        saliency[:, k] = channel_sums(layout, model, per_param)
    return saliency, tally.accuracy(), tally.mean_prob()


def group_weights(accuracy, mean_prob):
    """FairPrune's roles from the dense model's per-group accuracy -> (privileged column, weights).

    The privileged group is the one with the highest accuracy (ties: the higher mean probability
    of the true label, then the lower index). Two groups: the other one is the unprivileged group,
    weight 1 (the paper). More groups: every other group is unprivileged, weighted by its accuracy
    gap to the privileged group (weights sum to 1; all gaps zero: equal weights), so the groups the
    model serves worst count most. The privileged group's weight is 0."""
    k_groups = len(accuracy)
    priv = min(range(k_groups), key=lambda k: (-accuracy[k], -mean_prob[k], k))
    gaps = [0.0 if k == priv else accuracy[priv] - accuracy[k] for k in range(k_groups)]
    if sum(gaps) > 0:
        weights = [gp / sum(gaps) for gp in gaps]
    else:
        weights = [0.0 if k == priv else 1.0 / (k_groups - 1) for k in range(k_groups)]
    return priv, weights


def fairprune_scores(layout, saliency, priv, weights, beta, normalise=True, eps=1e-12):
    """Keep scores: -(S_priv - beta * sum_k weights_k S_k), so the channels FairPrune prunes first
    (salient for the privileged group, not for the others) score lowest. normalise: divide each
    dependency group's scores by its mean total saliency S_priv + sum_k weights_k S_k (a positive
    factor per group), so groups of very different scale compete on one threshold."""
    s = saliency.double()
    w = torch.tensor(weights, dtype=torch.float64)
    unpriv = s @ w
    scores = beta * unpriv - s[:, priv]
    if normalise:
        scale = s[:, priv] + unpriv
        for (_, n), off in zip(layout.groups, layout.offsets):
            scores[off : off + n] /= scale[off : off + n].mean() + eps
    return scores.float()
