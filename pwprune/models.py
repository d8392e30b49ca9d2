"""Model registry: every network the pipeline trains and prunes, built from a small JSON-able
arch dict so a checkpoint can rebuild its model (and replay its pruning history) from scratch.

torchvision is imported lazily inside its builders: a small_cnn job on the default digits data
must not pay the ~1.5 s it costs to import.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

MODEL_NAMES = (
    "small_cnn",
    "resnet20",
    "resnet56",
    "resnet18",
    "resnet34",
    "vgg16",
    "efficientnet_v2_s",
    "efficientnet_v2_m",
)


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
# Shortcuts that change shape are 1x1 conv + BN projections (option B) rather than zero-padding,
# because Torch-Pruning can follow a conv through the residual add but not a padded identity.


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n_blocks, in_channels, n_out, widths=(16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        blocks, c = [], widths[0]
        for s, w in enumerate(widths):
            for b in range(n_blocks):
                blocks.append(BasicBlock(c, w, 2 if (s > 0 and b == 0) else 1))
                c = w
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, n_out)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# ----------------------------------------------------------------------------------------------
# torchvision models (weights=None: no network, and the paper trains its own baselines)


def _replace_conv_in(conv, in_channels):
    """Same conv with a different number of input channels (grey-scale or multi-band input)."""
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None)


def _torchvision(name, in_channels, n_out, input_size):
    import torchvision.models as tvm  # lazy: see module docstring

    if name == "vgg16" and input_size < 32:
        # five 2x2 max-pools: anything below 32 px collapses to zero spatial size
        raise ValueError(f"vgg16 needs input_size >= 32, got input_size={input_size}")
    model = getattr(tvm, name)(weights=None, num_classes=n_out)
    if in_channels != 3:
        if name.startswith("resnet"):
            model.conv1 = _replace_conv_in(model.conv1, in_channels)
        elif name == "vgg16":
            model.features[0] = _replace_conv_in(model.features[0], in_channels)
        else:  # efficientnet_v2_*: features[0] is Conv2dNormActivation(conv, bn, act)
            model.features[0][0] = _replace_conv_in(model.features[0][0], in_channels)
    return model


def build_model(name, num_classes, in_channels=3, input_size=32):
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    if int(input_size) < 8:
        raise ValueError(f"input_size must be >= 8 pixels, got {input_size!r}")
    n_out, in_channels, input_size = num_outputs(num_classes), int(in_channels), int(input_size)
    if name == "small_cnn":
        return SmallCNN(in_channels, n_out)
    if name == "resnet20":
        return CifarResNet(3, in_channels, n_out)
    if name == "resnet56":
        return CifarResNet(9, in_channels, n_out)
    return _torchvision(name, in_channels, n_out, input_size)


def arch_dict(name, num_classes, in_channels=3, input_size=32):
    """Everything needed to rebuild the unpruned model; stored in checkpoints (JSON-able)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    return {"name": str(name), "num_classes": int(num_classes), "in_channels": int(in_channels),
            "input_size": int(input_size)}


def build_from_arch(arch):
    missing = [k for k in ("name", "num_classes", "in_channels", "input_size") if k not in arch]
    if missing:
        raise ValueError(f"arch dict is missing keys {missing}; got keys {sorted(arch)}")
    return build_model(arch["name"], arch["num_classes"], arch["in_channels"], arch["input_size"])


def example_input(arch):
    """A (1, C, H, W) input for dependency tracing and MAC counting at the model's resolution."""
    return torch.zeros(1, int(arch["in_channels"]), int(arch["input_size"]), int(arch["input_size"]))


def classifier_layers(model):
    """The final Linear of every registered model: its output size (the logits) must never be
    pruned. Its input channels may be, together with the layer that feeds them."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"model {type(model).__name__} has no nn.Linear classifier")
    return [linears[-1]]
