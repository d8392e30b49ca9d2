"""AutoBot (Castells & Yeom, 2021): learn which channels to keep with trainable gates.

One sigmoid gate per channel of every prunable group (a residual stream shares one gate per
channel across all the layers that write it) multiplies the group's feature maps. The model's
weights stay frozen; only the gates learn, on

    task loss (CE or PW, against the teacher) + beta * |estimated kept MACs / MACs - (1 - target)|
                                              + binarization * mean(g * (1 - g))

The MAC estimate is Layout.estimate_macs fed with the gate values: a conv's MACs scale with the
soft kept fraction of its input channels times that of its output channels. The binarisation
term pushes gates to 0 or 1 so thresholding them afterwards changes the network little.
The trained gate values are the channel scores; target.py bisects a threshold on them.
"""

import torch

from .importance import ChannelHooks
from .loop import batches, forward_loss


def train_gates(model, layout, loader, loss_fn, teacher, target_reduction, device, *, iterations=200,
                lr=0.05, beta=2.0, binarization=0.1, init=3.0, log=print):
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    model.eval()  # frozen weights: BN keeps its running statistics, as the pruned model will
    logits = torch.full((layout.total,), float(init), device=device, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr)
    hooks = ChannelHooks(model, layout, "gate")
    keep_target = 1.0 - target_reduction
    try:
        for it, batch in zip(range(iterations), batches(loader)):
            gates = torch.sigmoid(logits)
            hooks.gates = gates
            task = forward_loss(model, batch, loss_fn, teacher, device)
            kept = layout.estimate_macs(gates.cpu() if gates.device.type != "cpu" else gates) / layout.macs
            flop = (kept.to(device) - keep_target).abs()
            polar = (gates * (1 - gates)).mean()
            loss = task + beta * flop + binarization * polar
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if it % max(1, iterations // 5) == 0 or it == iterations - 1:
                log(f"autobot gates {it + 1}/{iterations}: task {task.item():.4f} kept MACs ~{kept.item():.3f} "
                    f"(target {keep_target:.3f}) binarisation {polar.item():.3f} "
                    f"gates<0.5: {(gates < 0.5).float().mean().item():.3f}")
    finally:
        hooks.remove()
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    return torch.sigmoid(logits).detach().float().cpu()
