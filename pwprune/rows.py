"""A growable buffer for per-sample rows collected batch by batch (losses, labels, logits).

Keeping one small tensor per batch and concatenating at the end looks harmless, but with glibc's
allocator those small long-lived blocks land between the large per-batch buffers (images,
activations) that are freed after every batch, and the heap can then neither reuse nor return
them: measured on a 1 GiB split of 128 px images (benchmarks/memory.py, mapped_split), a training
job's private memory grew by about one batch of float images per batch, ~7 GB in one epoch. The
buffer below allocates rarely (doubling), so nothing small outlives a batch."""

from __future__ import annotations

import torch


class RowBuffer:
    """Rows appended along dim 0; `tensor()` is everything appended so far (a view)."""

    def __init__(self, capacity: int = 0):
        self.capacity, self.n, self.data = max(0, int(capacity)), 0, None

    def append(self, rows: torch.Tensor) -> None:
        rows = rows.detach()
        k = len(rows)
        if self.data is None:
            self.data = torch.empty((max(self.capacity, k), *rows.shape[1:]), dtype=rows.dtype)
        elif self.n + k > len(self.data):
            grown = torch.empty((max(2 * len(self.data), self.n + k), *rows.shape[1:]), dtype=rows.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : self.n + k] = rows
        self.n += k

    def __len__(self):
        return self.n

    def tensor(self) -> torch.Tensor:
        if self.data is None:
            raise ValueError("no rows were appended")
        return self.data[: self.n]


def expected_rows(loader) -> int:
    """How many rows a pass over `loader` gives, where it can say (0: unknown)."""
    for source in (getattr(loader, "y", None), getattr(loader, "dataset", None)):
        try:
            return len(source)
        except TypeError:
            continue
    return 0
