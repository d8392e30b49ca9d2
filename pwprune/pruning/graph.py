"""The bridge to Torch-Pruning's dependency graph: which channels can be removed together
(groups), how many MACs each layer would keep for a given choice of channels, and the surgery.

Every prunable group is keyed by the name of its root module (the conv/linear whose output
channels define it), so a choice of channels made on one model can be applied to a deepcopy or
to a freshly built model of the same architecture. All groups' channels are laid out in one
flat vector (group i occupies offsets[i] : offsets[i] + n_i), which is what the scorers
(scorers.py) score, what AutoBot gates and what the MAC estimate consumes.

`layers` (LAYER_SCOPES) says what is pruned and which MACs a target counts:
  all   every group but the classifier's outputs (and a model's fixed_layers) is prunable, and MACs
        are every layer's (Torch-Pruning's count, activations and pools included);
  conv  only groups rooted at convolutions: no Linear layer loses output units (VGG-16's fc6/fc7
        stay whole; fc6 still loses the input columns of a pruned last conv's channels), and MACs
        are those of the full convolutions only (groups == 1; in x out x kernel x output size, no
        bias): the authors' count (prune/utils.py:148-156, 176-197, 227-253, 268-271, which wraps
        only such convs; depthwise convs are neither masked nor counted there).
Every user of a Layout (layout.macs, layout.estimate_macs) gets the chosen count.

In a model with attention (attention.attention_modules: timm's ViT/DeiT attention, torchvision's
ViT and Swin rewritten by models.rewrite_vit_attention), `transformer` (TRANSFORMER_SCOPES) says what is
prunable: each attention's whole heads (group key "<attention>@heads", one unit a head) and head
dimensions ("<attention>@head_dims", one unit a dimension of every head), and the MLP's hidden
widths (every other group). The residual stream (embedding width, with the position embedding and
class token) stays whole. Every count includes attention's Q K^T and A V products
(attention.attention_macs), which belong to no layer.
"""

import copy

import torch
import torch.nn as nn
import torch_pruning as tp

from pwprune.attention import (
    attention_modules,
    check_transformer,
    count_macs,
    head_channels,
    macs_params_on_device,
    prune_attention,
    qkv_rows,
    tracing,
)

from ..models import fixed_layers

LAYER_SCOPES = ("all", "conv")


def check_layers(layers):
    if layers not in LAYER_SCOPES:
        raise ValueError(
            f"layers must be one of {', '.join(LAYER_SCOPES)} (what pruning acts on and "
            f"which MACs the target counts), got {layers!r}"
        )
    return layers


def build_graph(model, example_inputs):
    """A fresh DependencyGraph; tracing puts the model in eval mode, so restore its mode."""
    was_training = model.training
    with torch.enable_grad(), tracing():
        DG = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    model.train(was_training)
    return DG


def _is_counted_conv(m):
    """A full convolution: what the authors wrap, mask and count (prune/utils.py:270)."""
    return isinstance(m, nn.modules.conv._ConvNd) and m.groups == 1


def conv_macs(model, example_inputs):
    """{module: MACs per sample} of every full convolution: in x out channels x kernel x output
    positions (bias not counted), as the authors' get_flops (prune/utils.py:148-156, 190-192)."""
    out = {}

    def hook(m, inputs, output):
        per_out = int(m.in_channels) * int(torch.tensor(m.kernel_size).prod())
        out[m] = out.get(m, 0) + per_out * output[0].numel()  # output[0]: one sample's (C, H, W)

    convs = [m for m in model.modules() if _is_counted_conv(m)]
    handles = [m.register_forward_hook(hook) for m in convs]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_inputs[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return out


def counted_macs(model, example_inputs, layers="all"):
    """MACs per sample as a target counts them (module docstring): every layer's or the convs'."""
    if check_layers(layers) == "all":
        return macs_params_on_device(model, example_inputs)[0]
    return int(sum(conv_macs(model, example_inputs).values()))


def _is_full_conv(m):
    # ordinary conv / linear: input and output channels are pruned independently;
    # depthwise (grouped) convs and norms have one channel axis shared by input and output
    return (isinstance(m, nn.modules.conv._ConvNd) and m.groups == 1) or isinstance(m, nn.Linear)


def _is_grouped_conv(m):
    """A grouped convolution that is not depthwise (RegNet, ResNeXt): Torch-Pruning removes its
    channels without keeping them spread evenly over the groups (its in-channel handler then keeps
    the wrong weights), so every channel group that touches one stays whole."""
    return isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and not (m.groups == m.in_channels == m.out_channels)


def _channel_count(m, role):
    if isinstance(m, nn.Linear):
        return m.in_features if role == "in" else m.out_features
    if isinstance(m, nn.modules.conv._ConvNd):
        return m.in_channels if role == "in" else m.out_channels
    if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        return m.num_features
    if isinstance(m, nn.GroupNorm):
        return m.num_channels
    return None  # other layers are left out of the MAC estimate (the real count corrects it)


class Layout:
    """Snapshot of the prunable groups of `model` and of its per-layer MACs.

    layers:  the scope (LAYER_SCOPES) it was built for
    macs:    the model's MACs per sample in that scope's count
    groups:  list of (key, n) in dependency-graph order; keys() their keys
    offsets: start of each group in the flat channel vector; total = its length
    axes:    (module name, role) -> [(local channel idx, flat idx)], role "out"/"in" for
             conv/linear weights, "ch" for norms and depthwise convs
    terms:   per layer with MACs that pruning changes: (macs, [(flat_idx, covered, size), ...])
             one entry per channel axis (in/out for conv/linear, one for norms/depthwise convs)
    fixed:   MACs of everything else (activations, pools, unprunable layers)
    sites:   module name -> (local channel idx, flat idx): where a group's channels are
             visible as feature maps (BN outputs, else the conv/linear outputs), used to gate
             them (AutoBot) or to probe their gradient (Taylor)
    """

    def __init__(self, model, DG, example_inputs, layers="all", transformer="all"):
        self.layers = check_layers(layers)
        units = check_transformer(transformer)
        names = {m: n for n, m in model.named_modules()}
        # attention's own layers: their groups are built below, by head and head dimension; any
        # other group that touches them is the residual stream, which stays whole
        attentions = attention_modules(model) if layers == "all" else {}
        attention_layers = {x for a in attentions.values() for x in (a.qkv, a.proj)}
        ignored = fixed_layers(model)
        if layers == "conv":  # no Linear loses output units; its inputs may go with a conv's
            ignored += [m for m in model.modules() if isinstance(m, nn.Linear) and m not in ignored]
        self.groups, self.offsets, self.total = [], [], 0
        axes = {}  # (module name, role) -> list of (local, flat)
        site_items = {}
        for group in DG.get_all_groups(ignored_layers=ignored):
            if any(_is_grouped_conv(item.dep.target.module) for item in group):
                continue  # held whole: see _is_grouped_conv
            if attentions and ("mlp" not in units or any(item.dep.target.module in attention_layers for item in group)):
                continue  # a transformer's attention (below) or residual stream, or MLP left whole
            root = group[0].dep.target.module
            key, n = names[root], len(group[0].idxs)
            off = self.total
            self.groups.append((key, n))
            self.offsets.append(off)
            self.total += n
            bn_sites, conv_sites = [], []
            for item in group:
                m = item.dep.target.module
                if m not in names:  # traced functional ops (add, relu, reshape...) hold no weights
                    continue
                if _is_full_conv(m):
                    role = "out" if item.dep.handler.__name__ == "prune_out_channels" else "in"
                else:
                    role = "ch"
                if _channel_count(m, role) is None:
                    continue
                local = torch.as_tensor(item.idxs, dtype=torch.long)
                flat = torch.as_tensor(item.root_idxs, dtype=torch.long) + off
                axes.setdefault((names[m], role), []).append((local, flat))
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    bn_sites.append((names[m], local, flat))
                elif role in ("out", "ch") and isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
                    conv_sites.append((names[m], local, flat))
            for name, local, flat in bn_sites or conv_sites:
                site_items.setdefault(name, []).append((local, flat))
        heads = self._attention_groups(model, attentions, units, axes, site_items)
        self.axes = axes
        self.sites = {
            name: (torch.cat([l for l, _ in v]), torch.cat([f for _, f in v])) for name, v in site_items.items()
        }

        if layers == "all":
            macs, _, layer_macs = count_macs(model, example_inputs)
        else:  # the convs only: the estimate below is then exact for 0/1 keep
            layer_macs = conv_macs(model, example_inputs)
            macs = sum(layer_macs.values())
        self.macs = int(macs)
        modules = dict(model.named_modules())
        per_module = {}
        for (name, role), parts in axes.items():
            m = modules[name]
            if m in attention_layers:
                continue  # modelled per attention (_attention_groups)
            size = _channel_count(m, role)
            flat = torch.full((size,), -1, dtype=torch.long)
            for local, f in parts:
                flat[local] = f
            covered = flat >= 0
            per_module.setdefault(name, []).append((flat[covered], int(covered.sum()), size))
        self.terms, modelled = [], 0
        for name, axes_ in per_module.items():
            macs = layer_macs.get(modules[name]) or 0
            if macs and modules[name] not in attention_layers:
                self.terms.append((float(macs), axes_))
                modelled += macs
        for attention, axes_ in heads:  # qkv, proj and the matrix products scale with heads x dims
            macs = sum(layer_macs.get(m) or 0 for m in (attention, attention.qkv, attention.proj))
            if macs and axes_:
                self.terms.append((float(macs), axes_))
                modelled += macs
        self.fixed = float(self.macs - modelled)

    def _attention_groups(self, model, attentions, units, axes, site_items):
        """Add each attention's head and head-dimension groups; -> [(attention, MAC axes)]: one
        axis (flat units, n, n) per unit kind, so an attention's MACs scale with the kept heads x
        the kept head dimensions. Their channels are the q, k, v rows (axes and sites of qkv, whose
        output is gated and probed) and proj's input columns."""
        out = []
        for name, a in attentions.items():
            mac_axes = []
            for unit, n in (("heads", int(a.num_heads)), ("head_dims", int(a.head_dim))):
                if unit not in units:
                    continue
                off = self.total
                self.groups.append((f"{name}@{unit}", n))
                self.offsets.append(off)
                self.total += n
                for i in range(n):
                    rows = torch.as_tensor(qkv_rows(a, unit, i), dtype=torch.long)
                    cols = rows[: len(rows) // 3]  # q's rows are proj's input columns
                    flat_rows = torch.full_like(rows, off + i)
                    axes.setdefault((f"{name}.qkv", "out"), []).append((rows, flat_rows))
                    axes.setdefault((f"{name}.proj", "in"), []).append((cols, flat_rows[: len(cols)]))
                    site_items.setdefault(f"{name}.qkv", []).append((rows, flat_rows))
                mac_axes.append((torch.arange(off, off + n), n, n))
            out.append((a, mac_axes))
        return out

    def keys(self):
        return [k for k, _ in self.groups]

    def estimate_macs(self, keep):
        """MACs if each flat channel is kept to the degree keep[i] in [0, 1]. Differentiable in
        keep (AutoBot's FLOP penalty); exact for conv/linear/norm layers with 0/1 keep."""
        est = keep.new_tensor(self.fixed)
        for macs, axes_ in self.terms:
            frac = 1.0
            for flat, covered, size in axes_:
                frac = frac * (size - covered + keep[flat].sum()) / size
            est = est + macs * frac
        return est

    def plan_from_pruned(self, pruned):
        """Flat boolean mask of channels to remove -> {group key: [channel idx, ...]}."""
        plan = {}
        for (key, n), off in zip(self.groups, self.offsets):
            idxs = torch.nonzero(pruned[off : off + n]).flatten().tolist()
            if idxs:
                plan[key] = idxs
        return plan


def apply_plan(DG, model, plan):
    """Remove the planned output channels of each group (and everything coupled to them).

    Goes through DG.get_pruning_group(...).prune() rather than group.prune(idxs): in
    Torch-Pruning 1.6 the latter records the history twice, the second time with the full
    channel list, which a replay would then try to remove."""
    modules = dict(model.named_modules())
    attention = {}  # attention name -> proj input columns of its planned heads and head dimensions
    for key, idxs in plan.items():
        if "@" in key:
            name, unit = key.split("@")
            attention.setdefault(name, set()).update(head_channels(modules[name], unit, idxs))
    for name, cols in attention.items():  # one removal each: the units index the unpruned heads
        prune_attention(DG, model, name, sorted(cols))
    for key, idxs in plan.items():
        if "@" in key:
            continue
        module = modules[key]
        pruner = DG.get_pruner_of_module(module)
        group = DG.get_pruning_group(module, pruner.prune_out_channels, [int(i) for i in idxs])
        if not DG.check_pruning_group(group):
            raise RuntimeError(f"refusing to remove every channel of group {key!r}")
        group.prune()


def trial_macs(model, plan, example_inputs, layers="all"):
    """MACs (as `layers` counts them) the model would have after `plan`, measured on a pruned deepcopy."""
    trial = copy.deepcopy(model)
    apply_plan(build_graph(trial, example_inputs), trial, plan)
    return counted_macs(trial, example_inputs, layers)
