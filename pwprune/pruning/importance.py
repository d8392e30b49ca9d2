"""The criteria and probes the scorers (scorers.py) are built from: filter norms, per-group
normalisation, and ChannelHooks, which gates feature maps (AutoBot, Taylor's trajectory) or
probes activation x gradient at them (Taylor). Scores are one per channel of the flat layout
(see graph.Layout); higher means more worth keeping. They only score: choosing how many
channels to remove is target.py's job, removing them is the dependency graph's.
"""

import torch
import torch.nn as nn


@torch.no_grad()
def magnitude_scores(layout, model, norm=2):
    """Filter norm of each channel over every layer coupled to it (Li et al. 2017, extended to
    groups the way Torch-Pruning's GroupMagnitudeImportance does): the conv/linear weights that
    produce the channel and those that consume it, so a channel feeding a residual stream is
    judged by all its writers and readers."""
    if norm not in (1, 2):
        raise ValueError(f"magnitude option norm must be 1 or 2, got {norm!r}")
    scores = torch.zeros(layout.total, dtype=torch.float64)
    modules = dict(model.named_modules())
    for (name, role), parts in layout.axes.items():
        m = modules[name]
        if not isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        w = m.weight.detach().double().abs().pow(norm)
        # out (and depthwise "ch"): one row of the weight per channel; in: one column
        per_channel = w.transpose(0, 1).flatten(1).sum(1) if role == "in" else w.flatten(1).sum(1)
        for local, flat in parts:
            scores.index_add_(0, flat, per_channel.cpu()[local])
    return scores.pow(1.0 / norm).float()


def normalise_in_groups(layout, scores, eps=1e-12):
    """Divide each group's scores by their mean so groups of very different scale (a residual
    stream summed over many layers vs a single conv) compete on one global threshold."""
    out = scores.clone().float()
    for (_, n), off in zip(layout.groups, layout.offsets):
        seg = out[off : off + n]
        out[off : off + n] = seg / (seg.mean() + eps)
    return out


TAYLOR_SITES = ("norm", "conv")


def conv_sites(layout, model):
    """Like layout.sites, one step earlier: for every group, the outputs of the conv/linear layers
    that write its channels (role "out", or "ch" for a depthwise conv), i.e. before any norm layer.
    The authors' Taylor hooks sit there (pruner.py:313-324, 398-399: the parent conv's output)."""
    modules = dict(model.named_modules())
    items = {}
    for (name, role), parts in layout.axes.items():
        if role in ("out", "ch") and isinstance(modules[name], (nn.modules.conv._ConvNd, nn.Linear)):
            items.setdefault(name, []).extend(parts)
    return {name: (torch.cat([l for l, _ in v]), torch.cat([f for _, f in v])) for name, v in items.items()}


def taylor_sites(layout, model, site):
    """Where Taylor's probe measures activation x gradient: "norm" = layout.sites (the BN outputs,
    or the conv/linear outputs of a group without BN), "conv" = conv_sites (before BN)."""
    if site == "norm":
        return layout.sites
    if site == "conv":
        return conv_sites(layout, model)
    raise ValueError(f"taylor option site must be one of {', '.join(TAYLOR_SITES)}, got {site!r}")


def _gate_factor(c, local, values):
    """A (c,) factor: channel local[i] times values[i]. A channel named more than once (an
    attention's q, k, v row belongs to a head and to a head dimension) gets the product."""
    factor = torch.ones(c, device=values.device, dtype=values.dtype)
    if len(torch.unique(local)) == len(local):
        return factor.index_put((local,), values)
    while len(local):
        order = torch.argsort(local, stable=True)
        first = torch.ones(len(local), dtype=torch.bool, device=local.device)
        first[order[1:]] = local[order[1:]] != local[order[:-1]]
        factor = factor * torch.ones_like(factor).index_put((local[first],), values[first])
        local, values = local[~first], values[~first]
    return factor


class ChannelHooks:
    """Multiplies every gated feature map (layout.sites) by a per-channel factor.

    mode="gate":  factor = the current gate values (AutoBot), set through .gates
    mode="probe": factor = a fresh all-ones (N, C) tensor per forward whose gradient is the
                  per-sample sum of activation x gradient over that channel's positions, i.e.
                  exactly the first-order Taylor term of removing it (Molchanov et al. 2017).
                  Multiplying rather than hooking the activation's grad keeps it correct when
                  an in-place ReLU later overwrites the activation.
    In gate mode, setting .probing = True adds the probe on top of the gates (Taylor's
    trajectory: channels already removed are masked by 0/1 gates while the rest are scored).
    probe_sites (default layout.sites): where the probe sits, e.g. conv_sites(layout, model) to
    measure before BN; the gates always sit at layout.sites.
    """

    def __init__(self, model, layout, mode, probe_sites=None):
        self.layout, self.mode, self.gates, self.probing = layout, mode, None, False
        self.gate_sites = layout.sites if mode == "gate" else {}
        self.probe_sites = layout.sites if probe_sites is None else probe_sites
        self.probes = []
        modules = dict(model.named_modules())
        names = list(dict.fromkeys([*self.gate_sites, *self.probe_sites]))
        self.handles = [
            modules[name].register_forward_hook(self._hook(name, modules[name], modules.get(name.rpartition(".")[0])))
            for name in names
        ]

    def _hook(self, name, module, owner=None):
        gate = self.gate_sites.get(name)
        probe_at = self.probe_sites.get(name)
        # a Linear's channels are its output's last axis ((N, C), or (N, tokens, C) in a transformer);
        # a conv's and a norm's, axis 1
        last = isinstance(module, nn.Linear)
        # a Swin window attention's qkv sees one sequence per window (models.WindowAttention sets
        # windows_per_sample each forward): the probe is per sample, repeated over its windows
        windowed = owner is not None and hasattr(owner, "windows_per_sample") and module is getattr(owner, "qkv", None)

        def shape(out, c, batch):
            return (batch, *([1] * (out.dim() - 2)), c) if last else (batch, c, *([1] * (out.dim() - 2)))

        def hook(module, inputs, out):
            c = out.shape[-1] if last else out.shape[1]
            if gate is not None:
                local, flat = gate
                factor = _gate_factor(c, local.to(out.device), self.gates[flat.to(out.device)].to(out.dtype))
                out = out * factor.view(shape(out, c, 1))
            if probe_at is None or (self.mode == "gate" and not self.probing):
                return out
            local, flat = probe_at
            per = int(owner.windows_per_sample) if windowed else 1
            probe = torch.ones(out.shape[0] // per, c, device=out.device, dtype=out.dtype, requires_grad=True)
            self.probes.append((probe, local, flat))
            factor = probe.repeat_interleave(per, dim=0) if per > 1 else probe
            return out * factor.view(shape(out, c, out.shape[0]))

        return hook

    def taylor_samples(self):
        """(N, layout.total): per sample, the sum over coupled feature maps of activation x
        gradient (signed), the gradient of the loss backpropagated from. Call after backward;
        clears the probes. (The group-aware scorers, pwprune.pruning.fair, split it by group.)"""
        n = self.probes[0][0].shape[0] if self.probes else 0
        per_sample = torch.zeros(n, self.layout.total)
        for probe, local, flat in self.probes:
            if probe.grad is not None:
                per_sample.index_add_(1, flat, probe.grad.detach().float().cpu()[:, local])
        self.probes = []
        return per_sample

    def taylor_batch(self):
        """|sum over coupled feature maps of activation x gradient| per sample, summed over the
        batch (caller divides by samples seen). Call after backward; clears the probes."""
        per_sample = self.taylor_samples()
        n = per_sample.shape[0]
        return per_sample.abs().sum(0), n

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles, self.probes = [], []
