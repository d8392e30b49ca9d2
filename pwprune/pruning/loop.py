"""The few lines of data handling shared by the data-driven methods (Taylor, AutoBot)."""


def batches(loader):
    """Cycle over the loader forever: gate training and Taylor steps count batches, not epochs."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("loader yielded no batches; data-driven pruning needs training data")


def forward_loss(model, batch, loss_fn, teacher, device):
    """loss_fn(logits, teacher_logits, targets) on one (x, y, g, idx) batch."""
    x, y, _, idx = batch
    x, y = x.to(device), y.to(device)
    teacher_logits = None
    if teacher is not None:
        teacher_logits = teacher(x, idx).to(device)
    logits = model(x)
    if logits.dim() == 1 or logits.shape[-1] == 1:
        y = y.float()  # single-logit binary model: BCE-style float targets
    return loss_fn(logits, teacher_logits, y)
