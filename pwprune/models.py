"""Model registry: every network the pipeline trains and prunes, built from a small JSON-able
arch dict so a checkpoint can rebuild its model (and replay its pruning history) from scratch.

torchvision is imported lazily inside its builders: a small_cnn job on the default digits data
must not pay the ~1.5 s it costs to import.
"""

import contextlib
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pwprune.names import MODEL_NAMES


def num_outputs(num_classes):
    """Binary tasks use one logit (BCE-style); everything else one logit per class."""
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    return 1 if int(num_classes) == 2 else int(num_classes)


# ----------------------------------------------------------------------------------------------
# small_cnn: a few conv layers, enough for 16-32 px digits to train in seconds on CPU


class SmallCNN(nn.Module):
    def __init__(self, in_channels, n_out, widths=(32, 32, 64, 64)):
        super().__init__()
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i % 2 == 1 and i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))  # halve resolution between the conv pairs
            c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, n_out)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# ----------------------------------------------------------------------------------------------
# CIFAR-style ResNet (He et al. 2016, section 4.2): 3 stages of n basic blocks, 16/32/64 channels.
# resnet20 / resnet56: shortcuts that change shape are 1x1 conv + BN projections (option B) rather
# than zero-padding, because Torch-Pruning can follow a conv through the residual add but not a padded
# identity; that keeps the residual stream prunable. Option A (the paper's authors'): CifarResNetA.


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, shortcut="B"):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if (stride != 1 or c_in != c_out) and shortcut == "A":
            self.shortcut = PadShortcut(c_in, c_out, stride)
        elif stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n_blocks, in_channels, n_out, widths=(16, 32, 64), shortcut="B"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks, c = [], widths[0]
        for s, w in enumerate(widths):
            for b in range(n_blocks):
                blocks.append(BasicBlock(c, w, 2 if (s > 0 and b == 0) else 1, shortcut))
                c = w
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, n_out)
        for m in self.modules():
            if shortcut == "A" and isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)  # He init (fan_in) of every weight, as the authors'
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# ----------------------------------------------------------------------------------------------
# The same CIFAR ResNets with He et al.'s option-A shortcuts, as the paper's authors train their
# ResNet-56 (robbiemeyer/pw_loss_pruning models/resnet.py:55-70, 104-111): where the shape changes,
# the identity is subsampled (stride 2) and zero-padded with (c_out - c_in) / 2 channels on each side;
# no parameters, 0.85 M for ResNet-56 in all. Names resnet20_a / resnet56_a.
#
# The padded identity adds the block input's channel i to output channel i + pad, and every block of
# a stage adds into the same channels: the stem conv, every block's conv2 and the shortcuts form one
# residual stream whose channels shift at each stage transition. Torch-Pruning traces F.pad as an
# elementwise op and cannot map those shifted indices, so this stream is fixed (fixed_layers): only the
# blocks' inner channels (conv1 -> bn1 -> conv2's input) are pruned. That is also what the authors'
# true_prune removes in practice: it removes a channel only where the activation is zero for the
# whole input, and a masked conv2 output channel is still fed by the identity (prune/utils.py:329-362).


class PadShortcut(nn.Module):
    """Option-A shortcut: x[:, :, ::stride, ::stride] with zero channels on both sides."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        if c_out < c_in:
            raise ValueError(f"an option-A shortcut only adds channels, got {c_in} -> {c_out}")
        self.stride, self.front = int(stride), (c_out - c_in) // 2
        self.back = c_out - c_in - self.front

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.front, self.back))


class CifarResNetA(CifarResNet):
    def __init__(self, n_blocks, in_channels, n_out, widths=(16, 32, 64)):
        super().__init__(n_blocks, in_channels, n_out, widths, shortcut="A")

    def fixed_layers(self):
        """The residual stream's writers: their output channels are never pruned (see above)."""
        return [self.conv1] + [block.conv2 for block in self.layers]


# ----------------------------------------------------------------------------------------------
# torchvision models: random init (weights=None), or torchvision's DEFAULT ImageNet weights read
# from the local torch hub cache (never downloaded) with a new head, as the paper's authors start
# their CelebA, CIFAR-10 (EfficientNet) and Fitzpatrick17k models


class SelfAttention(nn.Module):
    """torchvision ViT's self-attention (nn.MultiheadAttention, batch first) as separate qkv and proj
    Linear layers with the same weights and the same function: nn.MultiheadAttention keeps q, k and v
    in one in_proj weight that Torch-Pruning prunes only with the embedding width, so its heads could
    not be pruned. Called as torchvision's EncoderBlock calls it: (x, x, x, need_weights=False) ->
    (output, None). num_heads / head_dim follow pruning (pwprune.attention.set_heads)."""

    def __init__(self, dim, num_heads, dropout=0.0):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = int(num_heads), int(dim) // int(num_heads), float(dropout)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query, key=None, value=None, need_weights=False, **_):
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise ValueError("SelfAttention is self-attention: key and value must be the query")
        b, n, _ = query.shape
        q, k, v = self.qkv(query).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)), None


class WindowAttention(nn.Module):
    """torchvision Swin's ShiftedWindowAttention (v1) or ShiftedWindowAttentionV2 with the same
    parameters, buffers, state-dict keys and function, but calling its qkv and proj layers:
    torchvision hands their weights to F.linear inside shifted_window_attention, which
    Torch-Pruning's graph cannot follow. The per-head parameters outside qkv and proj (v1: the
    relative position bias table, one column per head; v2: cpb_mlp's last layer, one output row per
    head, and logit_scale, one per head) are kept out of the graph while it is traced
    (pwprune.attention.tracing) and cut with the heads by the surgery
    (attention.prune_attention / replay); head dimensions leave them whole. v1's scores keep the
    unpruned head size's scale, as timm's Attention keeps its `scale`; v2's are cosine, scaled by
    logit_scale, and ignore the k part of qkv's bias (zeroed at each forward, as torchvision's)."""

    def __init__(self, source):
        super().__init__()
        self.window_size, self.shift_size = list(source.window_size), list(source.shift_size)
        self.num_heads = int(source.num_heads)
        self.head_dim = int(source.qkv.in_features) // self.num_heads
        self.scale = self.head_dim**-0.5
        self.attention_dropout, self.dropout = float(source.attention_dropout), float(source.dropout)
        self.qkv, self.proj = source.qkv, source.proj
        self.v2 = hasattr(source, "logit_scale")
        if self.v2:
            self.logit_scale, self.cpb_mlp = source.logit_scale, source.cpb_mlp
            self.register_buffer("relative_coords_table", source.relative_coords_table)
        else:
            self.relative_position_bias_table = source.relative_position_bias_table
        self.register_buffer("relative_position_index", source.relative_position_index)
        self.windows_per_sample = 1

    def _bias(self, n):
        """The relative position bias (1, heads, n, n); read without the graph while it is traced."""
        from pwprune.attention import TRACING

        with torch.no_grad() if TRACING else contextlib.nullcontext():
            table = self.cpb_mlp(self.relative_coords_table) if self.v2 else self.relative_position_bias_table
            table = table.reshape(-1, table.shape[-1])
            bias = table[self.relative_position_index.flatten()].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
            return 16 * torch.sigmoid(bias) if self.v2 else bias

    def windows(self, x):
        """(sequences, tokens) of attention for an input (B, H, W, C): one sequence per window."""
        b, h, w, _ = x.shape
        wh, ww = self.window_size
        return b * (-(-h // wh)) * (-(-w // ww)), wh * ww

    def forward(self, x):
        from pwprune.attention import TRACING

        b, height, width, c = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (ww - width % ww) % ww, 0, (wh - height % wh) % wh))
        _, ph, pw, _ = x.shape
        shift = [0 if wh >= ph else self.shift_size[0], 0 if ww >= pw else self.shift_size[1]]
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        nw = (ph // wh) * (pw // ww)
        x = x.view(b, ph // wh, wh, pw // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nw, wh * ww, c)
        n, h, d = wh * ww, self.num_heads, self.head_dim
        self.windows_per_sample = nw  # qkv's input holds b x nw sequences (importance.ChannelHooks' probe)
        qkv = self.qkv(x)
        if self.v2 and self.qkv.bias is not None and not TRACING:  # v2 ignores k's bias
            third = qkv.shape[-1] // 3
            qkv = qkv - F.pad(self.qkv.bias[third : 2 * third], (third, third))
        q, k, v = qkv.reshape(b * nw, n, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        if self.v2:
            if not TRACING:  # cosine scores: Torch-Pruning's graph would tie the norms' single column to
                q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)  # the rows of q and k, so it sees v1's
            attn = q @ k.transpose(-2, -1)
            scale = self.logit_scale.detach() if TRACING else self.logit_scale
            attn = attn * torch.clamp(scale, max=math.log(100.0)).exp()
        else:
            attn = (q * self.scale).matmul(k.transpose(-2, -1))
        attn = attn + self._bias(n)  # its per-head parameters out of the graph: cut with the heads by hand
        if sum(shift) > 0:
            mask = x.new_zeros((ph, pw))
            hs = ((0, -wh), (-wh, -shift[0]), (-shift[0], None))
            ws = ((0, -ww), (-ww, -shift[1]), (-shift[1], None))
            for i, (h0, h1) in enumerate(hs):
                for j, (w0, w1) in enumerate(ws):
                    mask[h0:h1, w0:w1] = 3 * i + j
            mask = mask.view(ph // wh, wh, pw // ww, ww).permute(0, 2, 1, 3).reshape(nw, n)
            mask = mask.unsqueeze(1) - mask.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
            attn = (attn.view(b, nw, h, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, h, n, n)
        attn = F.dropout(F.softmax(attn, dim=-1), p=self.attention_dropout, training=self.training)
        x = self.proj(attn.matmul(v).transpose(1, 2).reshape(b * nw, n, h * d))
        x = F.dropout(x, p=self.dropout, training=self.training)
        c = x.shape[-1]
        x = x.view(b, ph // wh, pw // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
        return x[:, :height, :width, :].contiguous()


def rewrite_vit_attention(model):
    """Every torchvision ViT EncoderBlock's nn.MultiheadAttention replaced by SelfAttention with its
    weights, and every torchvision Swin block's ShiftedWindowAttention(V2) by WindowAttention with
    the same parameters (in place; returns the model). Other models are returned unchanged. (The
    name predates Swin.)"""
    for block in model.modules():
        mha = getattr(block, "self_attention", None)
        if type(block).__name__ != "EncoderBlock" or not isinstance(mha, nn.MultiheadAttention):
            continue
        if not (mha.batch_first and mha._qkv_same_embed_dim and mha.in_proj_bias is not None):
            raise ValueError("torchvision ViT attention without batch_first, one in_proj and biases is not supported")
        new = SelfAttention(mha.embed_dim, mha.num_heads, mha.dropout)
        with torch.no_grad():
            new.qkv.weight.copy_(mha.in_proj_weight)
            new.qkv.bias.copy_(mha.in_proj_bias)
            new.proj.weight.copy_(mha.out_proj.weight)
            new.proj.bias.copy_(mha.out_proj.bias)
        block.self_attention = new.to(mha.in_proj_weight.device, mha.in_proj_weight.dtype).train(mha.training)
    for block in model.modules():  # torchvision's Swin (v1, v2): its attention calls its layers
        attn = getattr(block, "attn", None)
        kind = type(attn).__qualname__
        if kind in ("ShiftedWindowAttention", "ShiftedWindowAttentionV2") and type(attn).__module__.startswith(
            "torchvision."
        ):
            block.attn = WindowAttention(attn).train(attn.training)
    return model


def refusal(model):
    """Why pwprune cannot prune `model` (str), or None: the first of its modules whose class is in
    names.REFUSED_MODULES, or an attention module (an int `num_heads`) of a class whose heads it
    cannot prune. Reads module classes only: no forward pass, no graph, so it answers at once."""
    from pwprune.attention import is_prunable_attention
    from pwprune.names import REFUSED_MODULES

    rewritten = {id(getattr(b, "self_attention", None)) for b in model.modules() if type(b).__name__ == "EncoderBlock"}
    for name, m in model.named_modules():
        kind = f"{type(m).__module__}.{type(m).__qualname__}"
        where = f"{name or 'the model'} ({type(m).__name__})"
        if id(m) in rewritten and isinstance(m, nn.MultiheadAttention):
            continue  # torchvision's ViT: rewrite_vit_attention makes it SelfAttention
        if kind.startswith("torchvision.models.swin_transformer.ShiftedWindowAttention"):
            continue  # torchvision's Swin (v1, v2): rewrite_vit_attention makes it WindowAttention
        if kind in REFUSED_MODULES:
            return f"{where}: {REFUSED_MODULES[kind]}"
        if isinstance(getattr(m, "num_heads", None), int) and not is_prunable_attention(m):
            if kind == "torchvision.models.vision_transformer.EncoderBlock":
                continue  # its self_attention is the attention (rewrite_vit_attention)
            return (
                f"{where} is an attention module whose heads pwprune cannot prune: it prunes timm's plain "
                "Attention (ViT, DeiT) and torchvision's ViT and Swin attention; others may hold per-head parameters "
                "(relative position biases, norms, gates) that Torch-Pruning's graph does not cut with the heads"
            )
    return None


def check_prunable(model, what="model"):
    """ValueError with the reason for a model pwprune cannot prune (refusal)."""
    why = refusal(model)
    if why:
        raise ValueError(f"{what} is refused before any pruning: {why}")
    return model


def _replace_conv_in(conv, in_channels):
    """Same conv with a different number of input channels (grey-scale or multi-band input)."""
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )


def _first_conv_name(model):
    """The input conv: the first Conv2d in module order (resnet conv1, vgg features.0, ...)."""
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return n
    raise ValueError(f"model {type(model).__name__} has no Conv2d to take the input channels")


def _set_submodule(model, name, module):
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, module)


# torchvision builders that need more than weights/num_classes for a plain single-output classifier
# (their auxiliary heads return a tuple in training mode and cannot be pruned as one graph)
_TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
# the smallest input some families take (pools or strides collapse anything smaller to 0 px)
_MIN_INPUT_SIZE = {"vgg": 32, "alexnet": 63, "inception_v3": 75}


OPTIONS_TAKEN = "only torchvision's ViTs and Swins and timm models take model_options"
# torchvision's ViT builders' configurations (vision_transformer.py): `options` may change any of
# them, so a small ViT (tests/test_transformers.py) is torchvision's VisionTransformer all the same
_TORCHVISION_VIT = {
    "vit_b_16": {"patch_size": 16, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072},
    "vit_b_32": {"patch_size": 32, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "mlp_dim": 3072},
    "vit_l_16": {"patch_size": 16, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "mlp_dim": 4096},
    "vit_l_32": {"patch_size": 32, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "mlp_dim": 4096},
    "vit_h_14": {"patch_size": 14, "num_layers": 32, "num_heads": 16, "hidden_dim": 1280, "mlp_dim": 5120},
}


# torchvision's Swin (v1) builders' configurations (swin_transformer.py), as for the ViTs
_TORCHVISION_SWIN = {
    "swin_t": {"patch_size": [4, 4], "embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "swin_s": {"patch_size": [4, 4], "embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
    "swin_b": {"patch_size": [4, 4], "embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
}
_TORCHVISION_SWIN.update({f"swin_v2_{k[-1]}": v for k, v in _TORCHVISION_SWIN.items()})
_SWIN_EXTRA = {
    "window_size": {"swin_": [7, 7], "swin_v2_": [8, 8]},
    "stochastic_depth_prob": {"t": 0.2, "s": 0.3, "b": 0.5},
}


def _check_options(name, options, config_keys):
    """ValueError naming the model_options that `name`'s builder does not take: its configuration's
    keys and the two dropouts every torchvision transformer takes."""
    valid = set(config_keys) | {"dropout", "attention_dropout"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"model_options {unknown} are not options of {name}; valid: {sorted(valid)}")


def _torchvision_swin(name, n_out, options):
    """torchvision's SwinTransformer (v1 or v2) of `name`'s configuration, options overriding it
    (any of patch_size, embed_dim, depths, num_heads, window_size, stochastic_depth_prob, dropout,
    attention_dropout); its attention is still torchvision's (build_model rewrites it)."""
    from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformer, SwinTransformerBlockV2

    _check_options(name, options, set(_TORCHVISION_SWIN[name]) | {"window_size", "stochastic_depth_prob"})
    v2 = name.startswith("swin_v2_")
    config = {
        **_TORCHVISION_SWIN[name],
        "window_size": _SWIN_EXTRA["window_size"]["swin_v2_" if v2 else "swin_"],
        "stochastic_depth_prob": _SWIN_EXTRA["stochastic_depth_prob"][name[-1]],
        **options,
    }
    if v2:
        config.update(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)
    return SwinTransformer(num_classes=n_out, **config)


def _torchvision_vit(name, n_out, input_size, options):
    """torchvision's VisionTransformer of `name`'s configuration (options override it) for
    input_size px; its attention is still nn.MultiheadAttention (build_model rewrites it)."""
    import torchvision.models as tvm  # lazy: see module docstring

    config = {**_TORCHVISION_VIT[name], **options}
    _check_options(name, options, set(_TORCHVISION_VIT[name]))
    if input_size % int(config["patch_size"]):
        raise ValueError(
            f"{name} needs input_size a multiple of its patch size {config['patch_size']}, got {input_size}"
        )
    return tvm.VisionTransformer(image_size=input_size, num_classes=n_out, **config)


def _torchvision(name, in_channels, n_out, input_size, options=None):
    """torchvision's classifier `name` from its model registry (get_model), random init, with
    n_out outputs (torchvision's own num_classes head) and its input conv taking in_channels.
    options: builder keyword arguments (model_options); only the ViTs take any (_TORCHVISION_VIT)."""
    import torchvision.models as tvm  # lazy: see module docstring

    for prefix, least in _MIN_INPUT_SIZE.items():
        if name.startswith(prefix) and input_size < least:
            raise ValueError(
                f"{name} needs input_size >= {least} (its strides and pools collapse smaller inputs), "
                f"got input_size={input_size}"
            )
    if name in _TORCHVISION_VIT:
        model = _torchvision_vit(name, n_out, input_size, dict(options or {}))
    elif name in _TORCHVISION_SWIN:
        model = _torchvision_swin(name, n_out, dict(options or {}))
    elif options:
        raise ValueError(f"model_options {sorted(options)}: {name} takes none ({OPTIONS_TAKEN})")
    else:
        model = tvm.get_model(name, weights=None, num_classes=n_out, **_TORCHVISION_KWARGS.get(name, {}))
    if in_channels != 3:
        first = _first_conv_name(model)
        _set_submodule(model, first, _replace_conv_in(model.get_submodule(first), in_channels))
    return model


def _sha256_prefix_ok(path, url):
    """torch.hub checks a file's sha256 against the prefix in its name only while downloading;
    check the cached file here too, so a truncated or substituted file is never trained from."""
    import hashlib

    found = torch.hub.HASH_REGEX.search(Path(url).name)
    expected = found.group(1) if found else ""
    if not expected:
        raise ValueError(f"{url}: no sha256 prefix in the file name, cannot verify {path}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    actual = h.hexdigest()
    if not actual.startswith(expected):
        raise ValueError(
            f"{path}: sha256 {actual[: len(expected)]}... does not match the expected prefix "
            f"{expected} in its name (truncated or not torchvision's file); delete it and "
            f"fetch it again"
        )


def load_imagenet_state(name):
    """The state dict of torchvision's DEFAULT weights of `name`, from $TORCH_HOME/hub/checkpoints
    (torch.hub.get_dir()), hash-checked, loaded with weights_only=True; never downloads."""
    import torchvision.models as tvm  # lazy: see module docstring

    from pwprune.weights import IMAGENET_FILES, fetch_hint, imagenet_models

    if name not in IMAGENET_FILES:
        raise ValueError(f"pretrained='imagenet' is only available for {imagenet_models()}; got model {name!r}")
    url = tvm.get_model_weights(name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not path.is_file():
        raise FileNotFoundError(
            f"the ImageNet weights of {name} are missing: expected {path}. pwprune "
            f"never downloads; {fetch_hint(name, path, url)}"
        )
    _sha256_prefix_ok(path, url)
    return torch.load(path, map_location="cpu", weights_only=True)


def _imagenet(name, in_channels, n_out, input_size, options=None):
    """torchvision model with its ImageNet weights and a fresh final Linear with n_out outputs: the
    same modules and state-dict keys as tvm.<name>(weights=None, num_classes=n_out), so the
    checkpoints rebuild from the arch dict with random init and then load their own weights."""
    from pwprune.weights import IMAGENET_FILES, imagenet_models

    if name not in IMAGENET_FILES:
        raise ValueError(f"pretrained='imagenet' is only available for {imagenet_models()}; got model {name!r}")
    if in_channels != 3:
        raise ValueError(
            f"pretrained='imagenet' needs 3 input channels (RGB), got in_channels={in_channels}"
            f" for {name}; use pretrained: none for this dataset"
        )
    if options:
        raise ValueError(
            f"pretrained='imagenet' takes {name} as published: model_options {sorted(options)} do not apply"
        )
    model = _torchvision(name, 3, 1000, input_size)
    state = load_imagenet_state(name)
    if name in _TORCHVISION_KWARGS:  # built without the auxiliary heads the weights carry
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
    if name in _TORCHVISION_VIT:  # the position embedding, resized to input_size's patch grid
        from torchvision.models.vision_transformer import interpolate_embeddings

        state = interpolate_embeddings(input_size, _TORCHVISION_VIT[name]["patch_size"], state)
    model.load_state_dict(state, strict=True)
    head_name = _head_name(model)
    head = model.get_submodule(head_name)
    if isinstance(head, nn.Linear):
        _set_submodule(model, head_name, nn.Linear(head.in_features, n_out))
    else:  # squeezenet: a 1x1 conv gives the logits
        _set_submodule(model, head_name, nn.Conv2d(head.in_channels, n_out, head.kernel_size))
    return model


# ----------------------------------------------------------------------------------------------
# timm models: `timm/<name>`, any classifier of timm's registry, random init or its default
# pretrained weights from the local Hugging Face cache (never downloaded; pwprune.weights)


def timm_name(name):
    """The timm registry name of `timm/<name>`, or None for any other model name."""
    from pwprune.names import TIMM_PREFIX

    return name[len(TIMM_PREFIX) :] if isinstance(name, str) and name.startswith(TIMM_PREFIX) else None


def _timm_kwargs(name, in_channels, n_out, input_size, options):
    from timm.models import get_pretrained_cfg

    kwargs = {"num_classes": n_out, "in_chans": in_channels, **options}
    cfg = get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size:  # ViT-like: position embeddings for one size
        kwargs.setdefault("img_size", input_size)
    return kwargs


def _timm(name, in_channels, n_out, input_size, options=None, pretrained=False):
    """timm.create_model(name) with n_out outputs, in_channels inputs and (for a model whose input
    size is fixed) img_size=input_size; options: more create_model keyword arguments
    (model_options). pretrained: its default pretrained weights from the local cache (True) or
    from a named local file (a path), which timm adapts (the head is new, the position embedding
    resized)."""
    import timm

    kwargs = _timm_kwargs(name, in_channels, n_out, input_size, dict(options or {}))
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    if in_channels != 3:
        raise ValueError(
            f"pretrained='imagenet' needs 3 input channels (RGB), got in_channels={in_channels} for timm/{name}; "
            "use pretrained: none for this dataset"
        )
    from pwprune.weights import timm_local_file, timm_weights_file

    if pretrained is True:
        path = timm_weights_file(name, timm.models.get_pretrained_cfg(name))
    else:
        path = timm_local_file(name, pretrained)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)


def local_weights(name, pretrained):
    """Whether `pretrained` names a local weights file (a path, not "none"/"imagenet") of timm model
    `name`: the library's form of the config's `pretrained_file`."""
    from pwprune.names import PRETRAINED_CHOICES

    return timm_name(name) is not None and isinstance(pretrained, (str, Path)) and pretrained not in PRETRAINED_CHOICES


def check_model_name(name):
    """ValueError for a name that is not offered: why, for a torchvision family the pruning graph
    cannot handle (names.REFUSED_MODELS), else the valid names. A timm name must be in the
    installed timm's registry (its refusals are found when it is built: refusal)."""
    from pwprune.names import REFUSED_MODELS

    if timm_name(name) is not None:
        try:
            import timm
        except ImportError:
            raise ValueError(f"model {name!r} needs timm: pip install timm (see pyproject.toml)") from None
        if not timm.models.is_model(timm_name(name)):
            raise ValueError(f"model {name!r}: timm has no model {timm_name(name)!r} (timm.list_models() lists them)")
        return name
    if name in REFUSED_MODELS:
        raise ValueError(f"model {name!r} is refused: {REFUSED_MODELS[name]}")
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return name


def check_config_model(name, options):
    """Config validation of a model name with its model_options: the name offered (check_model_name),
    and for a timm model or torchvision ViT the model as built, on the meta device (no memory, no
    weights), not refused (refusal) and taking the options."""
    check_model_name(name)
    if not (timm_name(name) is not None or options):
        return
    with torch.device("meta"):  # the data's input size is not known yet: 224 px, ImageNet's
        build_model(name, 10, 3, 224, options=options)


def check_timm_weights(name):
    """ValueError with the path and the fetch command when timm model `name`'s default
    pretrained weights are not in the local Hugging Face cache (pwprune.weights.timm_weights_file)."""
    from timm.models import get_pretrained_cfg

    from pwprune.weights import timm_weights_file

    return timm_weights_file(timm_name(name), get_pretrained_cfg(timm_name(name)))


def build_model(name, num_classes, in_channels=3, input_size=32, pretrained="none", options=None):
    """pretrained: "none" (random init) or "imagenet" (torchvision's DEFAULT weights from the local
    hub cache, or a timm model's default pretrained weights from the local Hugging Face cache; new
    head). options: the builder's keyword arguments (model_options; torchvision's ViTs, timm).

    Every name of MODEL_NAMES that is not the pipeline's own (names.OWN_MODELS) is torchvision's
    classifier of that name from its registry, with a head of num_outputs(num_classes) outputs and
    an input conv taking in_channels; `timm/<name>` is timm's. torchvision's ViT attention is
    rewritten as separate qkv and proj layers (rewrite_vit_attention), and a model holding layers
    pwprune cannot prune is refused (check_prunable)."""
    check_model_name(name)
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    if int(input_size) < 8:
        raise ValueError(f"input_size must be >= 8 pixels, got {input_size!r}")
    from pwprune.names import OWN_MODELS, PRETRAINED_CHOICES

    if pretrained not in PRETRAINED_CHOICES and not local_weights(name, pretrained):
        raise ValueError(
            f"pretrained must be one of {PRETRAINED_CHOICES} (or, for a timm model, the path of a local "
            f"weights file), got {pretrained!r}"
        )
    if options and name in OWN_MODELS:
        raise ValueError(f"model_options {sorted(options)}: {name} takes none ({OPTIONS_TAKEN})")
    n_out, in_channels, input_size = num_outputs(num_classes), int(in_channels), int(input_size)
    if timm_name(name) is not None:
        weights = pretrained == "imagenet" or (str(pretrained) if local_weights(name, pretrained) else False)
        model = _timm(timm_name(name), in_channels, n_out, input_size, options, weights)
        return check_prunable(model, f"model {name!r}")
    if pretrained == "imagenet":
        return rewrite_vit_attention(_imagenet(name, in_channels, n_out, input_size, options))
    if name == "small_cnn":
        return SmallCNN(in_channels, n_out)
    if name == "resnet20":
        return CifarResNet(3, in_channels, n_out)
    if name == "resnet56":
        return CifarResNet(9, in_channels, n_out)
    if name == "resnet20_a":
        return CifarResNetA(3, in_channels, n_out)
    if name == "resnet56_a":
        return CifarResNetA(9, in_channels, n_out)
    return rewrite_vit_attention(_torchvision(name, in_channels, n_out, input_size, options))


def arch_dict(name, num_classes, in_channels=3, input_size=32, pretrained="none", options=None):
    """Everything needed to rebuild the unpruned model; stored in checkpoints (JSON-able).

    A model started from ImageNet weights also carries the input normalisation those weights
    expect (input_mean, input_std), which the pipeline's loaders then use instead of the data's
    own train mean/std. The arch always rebuilds with random init (build_from_arch): the weights
    come from the checkpoint. options (model_options), when given, are stored as `options`."""
    check_model_name(name)
    arch = {
        "name": str(name),
        "num_classes": int(num_classes),
        "in_channels": int(in_channels),
        "input_size": int(input_size),
    }
    if options:
        arch["options"] = dict(options)
    if (pretrained == "imagenet" or local_weights(name, pretrained)) and timm_name(name) is not None:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(timm_name(name))
        arch.update(input_mean=[float(v) for v in cfg.mean], input_std=[float(v) for v in cfg.std])
    elif pretrained == "imagenet":
        from pwprune.weights import normalisation

        mean, std = normalisation(name)
        arch.update(input_mean=list(mean), input_std=list(std))
    elif pretrained != "none":
        raise ValueError(f"pretrained must be 'none' or 'imagenet', got {pretrained!r}")
    return arch


def input_normalisation(arch):
    """(mean, std) lists the model's inputs must be normalised with, or None: normalise with the
    data's train statistics (every arch without input_mean/input_std, e.g. older checkpoints)."""
    if "input_mean" not in arch and "input_std" not in arch:
        return None
    mean, std = arch.get("input_mean"), arch.get("input_std")
    c = int(arch["in_channels"])
    if not (
        isinstance(mean, list)
        and isinstance(std, list)
        and len(mean) == len(std) == c
        and all(float(s) > 0 for s in std)
    ):
        raise ValueError(f"arch input_mean/input_std must be two lists of {c} values (std > 0); got {mean!r}, {std!r}")
    return [float(m) for m in mean], [float(s) for s in std]


def build_from_arch(arch):
    missing = [k for k in ("name", "num_classes", "in_channels", "input_size") if k not in arch]
    if missing:
        raise ValueError(f"arch dict is missing keys {missing}; got keys {sorted(arch)}")
    return build_model(
        arch["name"], arch["num_classes"], arch["in_channels"], arch["input_size"], options=arch.get("options")
    )


def example_input(arch):
    """A (1, C, H, W) input for dependency tracing and MAC counting at the model's resolution."""
    return torch.zeros(1, int(arch["in_channels"]), int(arch["input_size"]), int(arch["input_size"]))


def _head_name(model):
    """The layer giving the logits: the last Linear, or the last Conv2d of a model without one
    (torchvision's squeezenets end in a 1x1 conv and a pool)."""
    for kind in (nn.Linear, nn.Conv2d):
        found = [n for n, m in model.named_modules() if isinstance(m, kind)]
        if found:
            return found[-1]
    raise ValueError(f"model {type(model).__name__} has no nn.Linear or nn.Conv2d classifier")


def classifier_layers(model):
    """The head of every registered model (_head_name): its output size (the logits) must never be
    pruned. Its input channels may be, together with the layer that feeds them."""
    return [model.get_submodule(_head_name(model))]


def fixed_layers(model):
    """Layers whose output channels pruning never removes: the classifier (classifier_layers) and
    whatever the model itself declares through a `fixed_layers()` method (the option-A ResNets'
    residual stream). Their input channels may still go with a pruned producer."""
    own = model.fixed_layers() if callable(getattr(model, "fixed_layers", None)) else []
    return classifier_layers(model) + [m for m in own if m not in classifier_layers(model)]
