"""Device-side batched input (issue 13, item 2): pwprune.data.dataset.Batches gathers each batch's
uint8 images at once and converts, normalises and augments them vectorised over the batch. The
same values as the per-sample SplitDataset without augmentation, the same augmentation
(crop with zero padding + horizontal flip) with it, seeded, and resumable mid-pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pwprune.data import Split
from pwprune.data.dataset import Batches, SplitDataset, crop_and_flip, crop_and_flip_copy, crop_and_flip_gather

META = {"mean": [0.2, 0.5, 0.7], "std": [0.3, 0.25, 0.2], "input_size": 16}


def split(n=50, size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    return Split("train", x, rng.integers(0, 2, n).astype(np.int64), rng.integers(0, 3, n).astype(np.int64))


def test_without_augmentation_batches_equal_the_per_sample_dataset_bit_for_bit():
    s = split()
    ds = SplitDataset(s, META)
    batches = list(Batches(s, META, 16, shuffle=True, seed=3))
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]
    seen = torch.cat([b[3] for b in batches])
    assert sorted(seen.tolist()) == list(range(50))  # one pass: every sample once
    for x, y, g, idx in batches:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16)
        expected = torch.stack([ds[int(i)][0] for i in idx])
        assert torch.equal(x, expected)
        assert torch.equal(y, torch.from_numpy(s.y)[idx]) and torch.equal(g, torch.from_numpy(s.g)[idx])


def reference_crop_and_flip(img, top, left, flip, pad):
    """SplitDataset's per-sample augmentation, with given draws."""
    h, w = img.shape[-2:]
    out = torch.nn.functional.pad(img, (pad, pad, pad, pad))[:, top : top + h, left : left + w]
    return out.flip(-1) if flip else out


@pytest.mark.parametrize("implementation", [crop_and_flip, crop_and_flip_copy, crop_and_flip_gather])
def test_crop_and_flip_is_the_per_sample_augmentation_for_every_draw(implementation):
    """Both implementations (the CPU's copies, CUDA's gathers), on every offset and flip."""
    x = torch.from_numpy(split(n=18, size=8).x)
    pad = 2
    tops = torch.tensor([0, 1, 2, 3, 4, 0, 4, 2, 1] * 2)
    lefts = torch.tensor([4, 3, 2, 1, 0, 0, 4, 2, 3] * 2)
    flips = torch.tensor([False] * 9 + [True] * 9)
    out = implementation(x, tops, lefts, flips, pad)
    for b in range(len(x)):
        assert torch.equal(out[b], reference_crop_and_flip(x[b], int(tops[b]), int(lefts[b]), bool(flips[b]), pad))


def test_augmentation_draws_crops_and_flips_as_the_per_sample_path_does():
    """Offsets uniform over 0..2p on each axis, a flip half the time: every padded position
    shows up, and the counts lie within 5 standard deviations of uniform."""
    s = split(n=400, size=16)
    pad = 2  # input_size 16 // 8
    shifts, flips = [], []
    for x, _, _, idx in Batches(s, META, 100, shuffle=True, seed=1, augment=True):
        clean = (torch.from_numpy(s.x[idx.numpy()]).float() / 255 - torch.tensor(META["mean"]).view(1, 3, 1, 1)) / (
            torch.tensor(META["std"]).view(1, 3, 1, 1)
        )
        raw = (x * torch.tensor(META["std"]).view(1, 3, 1, 1) + torch.tensor(META["mean"]).view(1, 3, 1, 1)) * 255
        for b in range(len(x)):
            found = [
                (t, left, f)
                for t in range(2 * pad + 1)
                for left in range(2 * pad + 1)
                for f in (False, True)
                if torch.allclose(
                    raw[b],
                    reference_crop_and_flip(torch.from_numpy(s.x[int(idx[b])]).float(), t, left, f, pad),
                    atol=1e-3,
                )
            ]
            assert len(found) == 1, f"sample {int(idx[b])}: not one crop-and-flip of its image ({found})"
            shifts.append(found[0][:2])
            flips.append(found[0][2])
        assert clean.shape == x.shape
    n = len(flips)
    assert abs(sum(flips) - n / 2) < 5 * (n / 4) ** 0.5
    for axis in (0, 1):
        counts = np.bincount([sh[axis] for sh in shifts], minlength=2 * pad + 1)
        expected = n / (2 * pad + 1)
        assert (counts > 0).all() and (abs(counts - expected) < 5 * (expected * (1 - 1 / (2 * pad + 1))) ** 0.5).all()


def test_the_draws_depend_on_the_seed_only():
    s = split()

    def run(seed):
        return [b[0] for b in Batches(s, META, 16, shuffle=True, seed=seed, augment=True)]

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


@pytest.mark.parametrize("augment", [False, True])
def test_a_restored_state_continues_with_the_very_batches_the_pass_would_have_had(augment):
    s = split()
    full = Batches(s, META, 8, shuffle=True, seed=2, augment=augment)
    first_pass = list(full)
    second_pass = list(full)
    part = Batches(s, META, 8, shuffle=True, seed=2, augment=augment)
    it = iter(part)
    for _ in range(3):
        next(it)
    state = part.state_dict()
    assert state["position"] == 3
    fresh = Batches(s, META, 8, shuffle=True, seed=2, augment=augment)
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert len(rest) == len(first_pass) - 3
    for got, want in zip(rest + list(fresh), first_pass[3:] + second_pass):
        assert torch.equal(got[3], want[3]) and torch.equal(got[0], want[0])


def test_between_passes_the_state_starts_the_next_pass():
    s = split()
    a = Batches(s, META, 8, shuffle=True, seed=4, augment=True)
    list(a)
    state = a.state_dict()
    assert state["position"] == 0
    b = Batches(s, META, 8, shuffle=True, seed=4, augment=True)
    b.load_state_dict(state)
    assert all(torch.equal(u[0], v[0]) and torch.equal(u[3], v[3]) for u, v in zip(list(a), list(b)))


def test_a_read_only_memory_map_is_read_without_a_copy_or_a_warning(tmp_path, recwarn):
    s = split()
    path = tmp_path / "x.npy"
    np.save(path, s.x)
    mapped = Split("train", np.load(path, mmap_mode="r"), s.y, s.g)
    got = [b[0] for b in Batches(mapped, META, 16)]
    want = [b[0] for b in Batches(s, META, 16)]
    assert all(torch.equal(u, v) for u, v in zip(got, want))
    assert torch.equal(SplitDataset(mapped, META)[3][0], SplitDataset(s, META)[3][0])
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        Batches(split(), META, 0)
