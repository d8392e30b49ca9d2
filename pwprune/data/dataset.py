"""The torch view of a prepared split: (x_normalised, y, g, idx) samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class SplitDataset(Dataset):
    """Yields (x float (C, H, W) normalised with the *train* mean/std, y int64, g int64, idx int64),
    idx being the sample's position in its split (the PW loss's cached teacher looks rows up by it).

    augment=True: random crop with zero padding (input_size // 8 px, 4 at 32 px) + horizontal flip,
    drawn from `generator` (a seeded torch.Generator: the draws then depend on nothing but its seed
    and the order of the samples), or from torch's global RNG when none is given.
    Not for digits (a flipped digit is another digit); the workflow decides per dataset.
    The images stay uint8 in memory and are converted per sample (a float copy of CelebA's train
    split would be 4x larger)."""

    def __init__(self, split, meta, augment=False, generator=None):
        self.x = torch.from_numpy(split.x)
        self.y = torch.from_numpy(split.y).long()
        self.g = torch.from_numpy(split.g).long()
        c = self.x.shape[1]
        self.mean = torch.tensor(meta["mean"], dtype=torch.float32).view(c, 1, 1)
        self.std = torch.tensor(meta["std"], dtype=torch.float32).view(c, 1, 1)
        self.augment = augment
        self.generator = generator
        self.pad = max(1, int(meta["input_size"]) // 8)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if not isinstance(i, int) and not self.augment:
            return self._batch(i)
        x = self.x[i].float().div_(255.0)
        if self.augment:
            h, w = x.shape[-2:]
            p = self.pad
            # pad raw pixels with 0 (black), as torchvision's RandomCrop(padding=p) does
            x = F.pad(x, (p, p, p, p))
            top, left = torch.randint(0, 2 * p + 1, (2,), generator=self.generator).tolist()
            x = x[:, top:top + h, left:left + w]
            if torch.rand((), generator=self.generator) < 0.5:
                x = x.flip(-1)
        x = (x - self.mean) / self.std
        return x, self.y[i], self.g[i], torch.tensor(i, dtype=torch.long)

    def _batch(self, idx):
        """A whole batch at once (a list of indices, as a BatchSampler yields them): the same values
        as collating the samples one by one, without a Python call per sample. Only without
        augmentation, whose per-sample draws from the global RNG must keep their order."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        x = (self.x[idx].float().div_(255.0) - self.mean) / self.std
        return x, self.y[idx], self.g[idx], idx
