"""Transformers: the attention modules pwprune prunes, their units (whole heads and head
dimensions), the surgery that keeps their head counts right, and the MACs of their matrix products.

An attention module here computes qkv = self.qkv(x) with rows laid out as [3, heads, head_dim],
attention per head, and self.proj over the heads' outputs laid side by side (head h owns proj's
input columns h * head_dim ... (h + 1) * head_dim - 1): timm's `Attention` (ViT, DeiT, BEiT-free
plain ViTs), pwprune.models.SelfAttention (what torchvision ViT's nn.MultiheadAttention becomes)
and pwprune.models.WindowAttention (torchvision Swin's window attention, v1 and v2, whose per-head
parameters outside qkv and proj stay out of the graph (`tracing`) and are cut by `cut_heads`).
Torch-Pruning's dependency graph ties proj's input columns to the q, k and v rows they read (its
unbind mapping), so one removal of proj's input columns removes a head or a head dimension from
all of q, k, v and proj. After it the module's num_heads / head_dim must say the new shape:
`set_heads` (pruning) and `replay` (a checkpoint's history on a fresh model) keep them so.

The attention matrix products (Q K^T and A V: 2 x tokens^2 x heads x head_dim MACs per sequence)
belong to no layer, so Torch-Pruning's counter misses them (it counts them only inside timm's
Attention, with a formula that is wrong once heads are pruned); `attention_macs` counts them per
module, with the module's qkv and proj.
"""

import contextlib

import torch

from pwprune.names import TRANSFORMER_SCOPES

# True while Torch-Pruning's graph traces the model (graph.build_graph): an attention with per-head
# parameters outside its qkv and proj (models.WindowAttention's relative position bias table) then
# reads them detached, so the graph does not tie them to the heads; the surgery cuts them
TRACING = False


@contextlib.contextmanager
def tracing():
    global TRACING
    before, TRACING = TRACING, True
    try:
        yield
    finally:
        TRACING = before


# what `transformer` adds to the prunable units of a model with attention (TRANSFORMER_SCOPES)
_UNITS = {"heads": {"heads"}, "head_dims": {"head_dims"}, "mlp": {"mlp"}, "all": {"heads", "head_dims", "mlp"}}


def check_transformer(transformer):
    if transformer not in TRANSFORMER_SCOPES:
        raise ValueError(
            f"transformer must be one of {', '.join(TRANSFORMER_SCOPES)} (what pruning removes in a model "
            f"with attention), got {transformer!r}"
        )
    return _UNITS[transformer]


def is_prunable_attention(m):
    """timm's Attention without the variants that add per-head parameters (qk norm, gates,
    a norm after attention), or pwprune's SelfAttention."""
    from pwprune.models import SelfAttention, WindowAttention

    if isinstance(m, (SelfAttention, WindowAttention)):
        return True
    kind = type(m)
    if not (kind.__name__ == "Attention" and kind.__module__.startswith("timm.")):
        return False
    plain = all(type(getattr(m, n, None)).__name__ == "Identity" for n in ("q_norm", "k_norm", "norm"))
    return plain and getattr(m, "gate", None) is None and hasattr(m, "qkv") and hasattr(m, "proj")


def attention_modules(model):
    """{name: module} of the attention modules whose heads pwprune prunes, in module order."""
    return {n: m for n, m in model.named_modules() if is_prunable_attention(m)}


def head_channels(m, unit, idxs):
    """proj's input columns of the given heads (unit "heads") or head dimensions ("head_dims")."""
    h, d = int(m.num_heads), int(m.head_dim)
    if unit == "heads":
        return [i * d + j for i in idxs for j in range(d)]
    return [i * d + j for i in range(h) for j in idxs]


def qkv_rows(m, unit, idx):
    """The qkv output rows (q, k and v) of one head or head dimension."""
    h, d = int(m.num_heads), int(m.head_dim)
    cols = head_channels(m, unit, [idx])
    return [s * h * d + c for s in range(3) for c in cols]


def set_heads(m, num_heads, head_dim):
    """Make the module's forward match its pruned qkv/proj: timm's Attention reshapes to
    (num_heads, head_dim) and its output to attn_dim."""
    m.num_heads, m.head_dim = int(num_heads), int(head_dim)
    if hasattr(m, "attn_dim"):
        m.attn_dim = int(num_heads) * int(head_dim)


def kept_heads(m, removed):
    """The heads of which some of proj's input columns stay once columns `removed` are gone."""
    d, removed = int(m.head_dim), set(int(i) for i in removed)
    return sorted({c // d for c in range(int(m.num_heads) * d) if c not in removed})


def cut_heads(m, heads):
    """Keep only the entries of `heads` in the module's per-head parameters outside qkv and proj
    (a Swin window attention's relative position bias table, one column per head; Swin V2's
    cpb_mlp output rows and logit_scale, one per head)."""
    per_head = [(getattr(m, "relative_position_bias_table", None), -1), (getattr(m, "logit_scale", None), 0)]
    cpb = getattr(m, "cpb_mlp", None)
    if cpb is not None:
        per_head.append((cpb[-1].weight, 0))
    for param, dim in per_head:
        if param is None or len(heads) == param.shape[dim]:
            continue
        keep = torch.as_tensor(heads, dtype=torch.long, device=param.device)
        param.data = param.data.index_select(dim, keep).contiguous()
        param.grad = None
    if cpb is not None:
        cpb[-1].out_features = len(heads)


def heads_after(m, removed):
    """(num_heads, head_dim) once proj's input columns `removed` are gone; the removal must keep
    a product of whole heads and head dimensions (what head_channels gives, in any union)."""
    h, d = int(m.num_heads), int(m.head_dim)
    removed = set(int(i) for i in removed)
    kept = [c for c in range(h * d) if c not in removed]
    heads = sorted({c // d for c in kept})
    dims = sorted({c % d for c in kept})
    if len(kept) != len(heads) * len(dims):
        raise ValueError(
            f"removing {len(removed)} input columns of an attention's proj leaves {len(kept)}, not whole heads "
            f"x head dimensions ({len(heads)} x {len(dims)}); the heads would no longer be equal in size"
        )
    return len(heads), len(dims)


def prune_attention(DG, model, name, idxs):
    """Remove proj's input columns `idxs` of attention `name` (with the q, k, v rows they read)
    and set its head count and head size."""
    m = model.get_submodule(name)
    heads, kept = heads_after(m, idxs), kept_heads(m, idxs)
    pruner = DG.get_pruner_of_module(m.proj)
    group = DG.get_pruning_group(m.proj, pruner.prune_in_channels, sorted(int(i) for i in idxs))
    if not DG.check_pruning_group(group):
        raise RuntimeError(f"refusing to remove every head of attention {name!r}")
    group.prune()
    cut_heads(m, kept)
    set_heads(m, *heads)


def replay(DG, model, history):
    """Torch-Pruning's load_pruning_history, plus each attention's head count: an entry that
    removes an attention's proj input columns also sets its (num_heads, head_dim)."""
    by_proj = {f"{n}.proj": m for n, m in attention_modules(model).items()}
    for module_name, is_out, idxs in history:
        module = model.get_submodule(module_name)
        pruner = DG.get_pruner_of_module(module)
        attention = None if is_out else by_proj.get(module_name)
        heads = heads_after(attention, idxs) if attention is not None else None
        kept = kept_heads(attention, idxs) if attention is not None else None
        fn = pruner.prune_out_channels if is_out else pruner.prune_in_channels
        DG.get_pruning_group(module, fn, idxs).prune(record_history=False)
        if heads is not None:
            cut_heads(attention, kept)
            set_heads(attention, *heads)


def attention_macs(model, example_inputs):
    """{module: MACs per sample} of every attention module's Q K^T and A V products (2 x tokens^2 x
    heads x head_dim per sequence; a window counts as a sequence) and of its qkv and proj layers
    (by Torch-Pruning's Linear formula: input elements x outputs, plus the outputs once for a
    bias), from one forward pass in eval mode. Empty, without a pass, for a model without
    attention modules. count_macs puts these in place of Torch-Pruning's own count of timm's
    Attention, whose formula takes proj to be square (wrong once heads are pruned)."""
    found = list(attention_modules(model).values())
    if not found:
        return {}
    out = {}

    def products(m, inputs, output):
        x = inputs[0]
        sequences, tokens = m.windows(x) if hasattr(m, "windows") else (int(x.shape[0]), int(x.shape[1]))
        out[m] = out.get(m, 0) + 2 * sequences * tokens * tokens * int(m.num_heads) * int(m.head_dim)

    def linear(m, inputs, output):
        out[m] = out.get(m, 0) + inputs[0].numel() * output.shape[-1] + (output.shape[-1] if m.bias is not None else 0)

    handles = [m.register_forward_hook(products) for m in found]
    handles += [layer.register_forward_hook(linear) for m in found for layer in (m.qkv, m.proj)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    batch = int(example_inputs.shape[0])
    return {m: v // batch for m, v in out.items()}


# MACs with attention counted. Here, outside the pruning package, so that the jobs that only count
# (training, evaluation: pwprune.inference) do not depend on the pruning code's hash.


def macs_params_on_device(model, example_inputs):
    """(every layer's MACs per sample, parameters) by Torch-Pruning's counter, run where the
    model is (the counter deep-copies it and counts in eval mode), with attention counted by
    count_macs. The same numbers as pwprune.inference.count_macs_params, without that one's extra
    copy to the CPU, since pruning counts many trial models."""
    macs, params, _ = count_macs(model, example_inputs)
    return macs, params


def count_macs(model, example_inputs):
    """(every layer's MACs, parameters, {module: MACs}) by Torch-Pruning's counter, with every
    attention module's qkv, proj and matrix products counted by attention.attention_macs instead:
    the module's entry then holds its products' MACs only. (The counter gives a module that holds
    others the sum of theirs, and timm's Attention one count of its own that covers its layers.)"""
    import torch_pruning as tp  # lazy: a training job that never counts MACs does not pay for it

    macs, params, layer_macs, _ = tp.utils.count_ops_and_params(model, example_inputs, layer_wise=True)
    ours = attention_macs(model, example_inputs)
    if not ours:
        return int(macs), int(params), layer_macs
    layer_macs = dict(layer_macs)
    for a in attention_modules(model).values():
        if layer_macs.get(a.qkv) is None:  # counted as one module (timm's Attention): take it out
            macs -= layer_macs.get(a) or 0
        else:  # its layers were counted: the products are new
            macs -= (layer_macs.get(a.qkv) or 0) + (layer_macs.get(a.proj) or 0)
        macs += ours[a] + ours[a.qkv] + ours[a.proj]
    return int(macs), int(params), {**layer_macs, **ours}
