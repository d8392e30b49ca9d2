"""The torch view of a prepared split: (x_normalised, y, g, idx) samples and batches.

`Batches` is what the pipeline trains and evaluates with: whole batches of uint8 images gathered
from the (memory-mapped) split at once, moved to the device (pinned memory, non_blocking on
CUDA), then cropped, flipped, converted and normalised there, vectorised over the batch. Its
position in a pass and its generators make a state that a resumed job restores (state_dict).
`SplitDataset` is the per-sample torch Dataset of the same data (for a DataLoader of your own,
and for the Taylor trajectory, which draws its own batches)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

AUGMENT_SEED_OFFSET = 1_000_003  # the augmentation generator's seed is the shuffle's + this


def _pad(meta) -> int:
    """Random-crop padding: input_size // 8 px (4 at 32 px, as torchvision's CIFAR recipes)."""
    return max(1, int(meta["input_size"]) // 8)


def _stats(meta, shape):
    """The normalisation's mean and std, shaped to broadcast over a sample or a batch."""
    return tuple(torch.tensor(meta[k], dtype=torch.float32).view(shape) for k in ("mean", "std"))


class SplitDataset(Dataset):
    """Yields (x float (C, H, W) normalised with the *train* mean/std, y int64, g int64, idx int64),
    idx being the sample's position in its split (the PW loss's cached teacher looks rows up by it).

    augment=True: random crop with zero padding (input_size // 8 px, 4 at 32 px) + horizontal flip,
    drawn from `generator` (a seeded torch.Generator: the draws then depend on nothing but its seed
    and the order of the samples), or from torch's global RNG when none is given.
    Not for digits (a flipped digit is another digit); the workflow decides per dataset.
    The images stay uint8 (a read-only memory map of the prepared file) and are converted per
    sample (a float copy of CelebA's train split would be 4x larger)."""

    def __init__(self, split, meta, augment=False, generator=None):
        self.x = split.x  # numpy, possibly a read-only np.memmap: read per sample, never copied whole
        self.y = torch.from_numpy(np.asarray(split.y, np.int64))
        self.g = torch.from_numpy(np.asarray(split.g, np.int64))
        c = self.x.shape[1]
        self.mean, self.std = _stats(meta, (c, 1, 1))
        self.augment = augment
        self.generator = generator
        self.pad = _pad(meta)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if not isinstance(i, int) and not self.augment:
            return self._batch(i)
        x = torch.from_numpy(np.array(self.x[i])).float().div_(255.0)
        if self.augment:
            h, w = x.shape[-2:]
            p = self.pad
            # pad raw pixels with 0 (black), as torchvision's RandomCrop(padding=p) does
            x = F.pad(x, (p, p, p, p))
            top, left = torch.randint(0, 2 * p + 1, (2,), generator=self.generator).tolist()
            x = x[:, top : top + h, left : left + w]
            if torch.rand((), generator=self.generator) < 0.5:
                x = x.flip(-1)
        x = (x - self.mean) / self.std
        return x, self.y[i], self.g[i], torch.tensor(i, dtype=torch.long)

    def _batch(self, idx):
        """A whole batch at once (a list of indices, as a BatchSampler yields them): the same values
        as collating the samples one by one, without a Python call per sample. Only without
        augmentation, whose per-sample draws must keep their order."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        x = (torch.from_numpy(self.x[idx.numpy()]).float().div_(255.0) - self.mean) / self.std
        return x, self.y[idx], self.g[idx], idx


def crop_and_flip(x: torch.Tensor, tops, lefts, flips, pad: int) -> torch.Tensor:
    """Batch (B, C, H, W) -> each image padded with `pad` zeros on every side, cropped back to H x W
    at (tops[b], lefts[b]) in the padded frame and, where flips[b], mirrored left-right: what
    SplitDataset does to one sample, for a whole batch on x's device and in its dtype. On CUDA in
    two gathers (two kernels for the batch); on a CPU by copying each image's visible part into a
    zeroed batch (7x faster there than the gathers, measured at 128 px)."""
    if x.device.type == "cuda":
        return crop_and_flip_gather(x, tops, lefts, flips, pad)
    return crop_and_flip_copy(x, tops, lefts, flips, pad)


def crop_and_flip_gather(x, tops, lefts, flips, pad):
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (tops.view(-1, 1) + torch.arange(h)).to(dev)  # (B, H) rows of the padded frame
    cols = lefts.view(-1, 1) + torch.arange(w)
    cols = torch.where(flips.view(-1, 1), cols.flip(1), cols).to(dev)  # a flip reads columns backwards
    out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def crop_and_flip_copy(x, tops, lefts, flips, pad):
    b, c, h, w = x.shape
    out = torch.zeros_like(x)
    for i, (top, left, flip) in enumerate(zip(tops.tolist(), lefts.tolist(), flips.tolist())):
        dy, dx = top - pad, left - pad  # the crop's shift against the unpadded image
        src = x[i, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
        out[i, :, max(-dy, 0) : max(-dy, 0) + src.shape[1], max(-dx, 0) : max(-dx, 0) + src.shape[2]] = src
        if flip:
            out[i] = out[i].flip(-1)
    return out


def to_device(x: torch.Tensor, device, pin: bool) -> torch.Tensor:
    """A CPU batch on `device`. pin: through page-locked memory with non_blocking, so the copy to a
    GPU overlaps the work queued before it (Batches pins on CUDA); else a plain copy (none at all
    for a CPU device). One path for every device: CPU runs exercise it too."""
    if pin:
        x = x.pin_memory()
    return x.to(device, non_blocking=pin)


class Batches:
    """(x, y, g, idx) batches of one prepared split, for training and evaluation.

    Each batch's uint8 images are gathered in one indexing call from the split (a read-only
    memory map: the job holds only the batch, the OS page cache holds the split once for every
    job on the node), moved to `device` (from pinned memory, non_blocking, on CUDA), then
    augmented (random crop with zero padding of input_size // 8 px and a horizontal flip, the
    distribution of SplitDataset's) and converted and normalised there, vectorised over the
    batch. x arrives on `device` as float32; y, g and idx stay on the CPU (the cached teacher
    looks rows up by idx, the sample's position in its split).

    shuffle: each pass draws a permutation from a generator seeded with `seed`; augment draws
    from another, seeded with seed + AUGMENT_SEED_OFFSET; the draws are made on the CPU, so they
    are the same on every device. state_dict() / load_state_dict() save and restore both
    generators and the position inside the current pass: a training job killed mid-epoch resumes
    with the very batches it would have had (pwprune.train.fit's resume state)."""

    def __init__(self, split, meta, batch_size, *, shuffle=False, seed=0, augment=False, device="cpu"):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.split, self.meta = split, meta
        self.x = split.x
        self.y = torch.from_numpy(np.asarray(split.y, np.int64))
        self.g = torch.from_numpy(np.asarray(split.g, np.int64))
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, bool(shuffle), bool(augment), int(seed)
        self.device = torch.device(device)
        # CUDA: each batch is copied from page-locked memory without blocking (to_device)
        self.pin = self.device.type == "cuda"
        c = self.x.shape[1]
        self.mean, self.std = (t.to(self.device) for t in _stats(meta, (1, c, 1, 1)))
        self.pad = _pad(meta)
        self.order_generator = torch.Generator().manual_seed(self.seed)
        self.augment_generator = torch.Generator().manual_seed(self.seed + AUGMENT_SEED_OFFSET)
        self._pass_start = None  # the order generator's state before this pass drew its permutation
        self._position = 0  # batches of the current pass yielded so far
        self._continue = False  # the next pass continues a restored one
        self._dataset = None

    def __len__(self):
        return math.ceil(len(self.y) / self.batch_size)

    @property
    def dataset(self):
        """The per-sample view (SplitDataset) of the same split, with an augmentation generator of
        its own seeded as this one's (for code that draws its own batches: the Taylor trajectory)."""
        if self._dataset is None:
            gen = torch.Generator().manual_seed(self.seed + AUGMENT_SEED_OFFSET) if self.augment else None
            self._dataset = SplitDataset(self.split, self.meta, augment=self.augment, generator=gen)
        return self._dataset

    def __iter__(self):
        if self._continue:
            self._continue = False
            self.order_generator.set_state(self._pass_start)
            start = self._position
        else:
            self._pass_start = self.order_generator.get_state()
            start = 0
        n = len(self.y)
        order = torch.randperm(n, generator=self.order_generator) if self.shuffle else torch.arange(n)
        for b in range(start, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self._inputs(idx)
            self._position = b + 1
            yield x, self.y[idx], self.g[idx], idx
        self._position = 0

    def _inputs(self, idx):
        x = torch.from_numpy(self.x[idx.numpy()])  # one gather from the memory map: uint8 (B, C, H, W)
        x = to_device(x, self.device, self.pin)
        if self.augment:
            p = self.pad
            offsets = torch.randint(0, 2 * p + 1, (len(idx), 2), generator=self.augment_generator)
            flips = torch.rand(len(idx), generator=self.augment_generator) < 0.5
            x = crop_and_flip(x, offsets[:, 0], offsets[:, 1], flips, p)  # on uint8: 4x less to move
        # in place: one float batch allocated, the same arithmetic as SplitDataset's
        return x.float().div_(255.0).sub_(self.mean).div_(self.std)

    def state_dict(self) -> dict:
        """Where the batches stand: between two passes, or `position` batches into one."""
        inside = 0 < self._position < len(self)
        return {
            "order": (self._pass_start if inside else self.order_generator.get_state()).clone(),
            "augment": self.augment_generator.get_state().clone(),
            "position": self._position if inside else 0,
        }

    def load_state_dict(self, state: dict) -> None:
        self.order_generator.set_state(state["order"])
        self.augment_generator.set_state(state["augment"])
        self._position = int(state["position"])
        self._pass_start = state["order"]
        self._continue = self._position > 0
