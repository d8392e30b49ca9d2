"""Tiny datasets written in each dataset's *real* on-disk format, for the data tests.

torchvision's CIFAR10 and CelebA check the md5 of the official files, which a fixture cannot
match; `trust_fixture_md5s` points those class-level md5 tables at the fixture's own files
(via pytest's monkeypatch, undone after the test), so the real loader code runs unchanged."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
from PIL import Image

from pwprune.data.celeba import ATTRIBUTES
from pwprune.data.cifar10 import CLASSES


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


# ---- CIFAR-10: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, python pickles


def write_cifar10(root, per_class_train=100, per_class_test=10, seed=0):
    """Pixels drawn from 0..200, so a pure yellow (255, 255, 0) pixel can only come from a square."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    y = np.repeat(np.arange(10), per_class_train)
    y = y[rng.permutation(len(y))]
    x = rng.integers(0, 201, size=(len(y), 3 * 32 * 32), dtype=np.uint8)  # rows: R plane, G plane, B plane
    for b, (xs, ys) in enumerate(zip(np.array_split(x, 5), np.array_split(y, 5)), 1):
        _pickle(
            os.path.join(folder, f"data_batch_{b}"),
            {
                "batch_label": f"training batch {b} of 5",
                "labels": ys.tolist(),
                "data": xs,
                "filenames": [f"img_{b}_{i}.png" for i in range(len(ys))],
            },
        )
    yt = np.repeat(np.arange(10), per_class_test)
    xt = rng.integers(0, 201, size=(len(yt), 3 * 32 * 32), dtype=np.uint8)
    _pickle(
        os.path.join(folder, "test_batch"),
        {
            "batch_label": "testing batch 1 of 1",
            "labels": yt.tolist(),
            "data": xt,
            "filenames": [f"test_{i}.png" for i in range(len(yt))],
        },
    )
    _pickle(
        os.path.join(folder, "batches.meta"),
        {"num_cases_per_batch": len(y) // 5, "label_names": list(CLASSES), "num_vis": 3072},
    )
    return y, yt


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


# ---- CelebA: celeba/{img_align_celeba/*.jpg, list_attr_celeba.txt, identity_CelebA.txt,
#      list_bbox_celeba.txt, list_landmarks_align_celeba.txt, list_eval_partition.txt}


def write_celeba(root, cells_train=None, n_val=6, n_test=6, seed=0, size=(36, 44)):
    """cells_train: {(blond, male): count} for the train partition. Returns (filenames, attrs, partition)."""
    rng = np.random.default_rng(seed)
    cells_train = cells_train or {(1, 1): 2, (1, 0): 8, (0, 1): 12, (0, 0): 18}
    rows = []  # (blond, male, partition)
    for (b, m), k in cells_train.items():
        rows += [(b, m, 0)] * k
    rows += [(i % 2, (i // 2) % 2, 1) for i in range(n_val)]
    rows += [(i % 2, (i // 2) % 2, 2) for i in range(n_test)]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    folder = os.path.join(root, "celeba")
    img_dir = os.path.join(folder, "img_align_celeba")
    os.makedirs(img_dir, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(rows))]
    attrs = rng.choice([-1, 1], size=(len(rows), len(ATTRIBUTES)))
    bi, mi = ATTRIBUTES.index("Blond_Hair"), ATTRIBUTES.index("Male")
    for i, (b, m, _) in enumerate(rows):
        attrs[i, bi], attrs[i, mi] = 2 * b - 1, 2 * m - 1
        arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(img_dir, names[i]), quality=90)
    # formats as in the official files: a count line, a header line (attr file: trailing space),
    # then space-padded rows
    with open(os.path.join(folder, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{len(rows)}\n" + " ".join(ATTRIBUTES) + " \n")
        for n, a in zip(names, attrs):
            f.write(n + " " + " ".join(f"{v:2d}" for v in a) + "\n")
    with open(os.path.join(folder, "list_eval_partition.txt"), "w") as f:
        f.writelines(f"{n} {p}\n" for n, (_, _, p) in zip(names, rows))
    with open(os.path.join(folder, "identity_CelebA.txt"), "w") as f:
        f.writelines(f"{n} {1 + i % 7}\n" for i, n in enumerate(names))
    with open(os.path.join(folder, "list_bbox_celeba.txt"), "w") as f:
        f.write(f"{len(rows)}\nimage_id x_1 y_1 width height\n")
        f.writelines(f"{n}    95  71 226 313\n" for n in names)
    with open(os.path.join(folder, "list_landmarks_align_celeba.txt"), "w") as f:
        f.write(
            f"{len(rows)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
            "rightmouth_x rightmouth_y\n"
        )
        f.writelines(f"{n}           69  109  106  113   77  142   73  152  108  154\n" for n in names)
    return names, rows


def trust_fixture_md5s(monkeypatch, root):
    """Point torchvision's md5 tables at the fixture files present under root."""
    from torchvision.datasets import CIFAR10, CelebA

    cifar = os.path.join(root, "cifar-10-batches-py")
    if os.path.isdir(cifar):

        def h(name):
            p = os.path.join(cifar, name)
            return md5(p) if os.path.exists(p) else "0" * 32

        monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", h(f"data_batch_{i}")] for i in range(1, 6)])
        monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", h("test_batch")]])
        monkeypatch.setattr(
            CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": h("batches.meta")}
        )
    celeba = os.path.join(root, "celeba")
    if os.path.isdir(celeba):
        table = []
        for file_id, digest, name in CelebA.file_list:
            p = os.path.join(celeba, name)
            table.append((file_id, md5(p) if os.path.exists(p) else digest, name))
        monkeypatch.setattr(CelebA, "file_list", table)


# ---- Fitzpatrick17k: fitzpatrick17k.csv + images/<md5hash>.jpg

FITZ_HEADER = (
    "md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,three_partition_label,qc,url,url_alphanum"
)
NINE = {"non-neoplastic": "inflammatory", "benign": "benign dermal", "malignant": "malignant melanoma"}


def jpeg_bytes(seed, size=(30, 24)):
    import io

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write_fitzpatrick(root, per_cell=4, with_images=True, url_base="https://example.invalid/img"):
    """per_cell rows for every (skin type 1..6, class) plus 3 rows with skin type -1.
    Returns the list of (md5hash, scale, three_label, url)."""
    os.makedirs(root, exist_ok=True)
    img_dir = os.path.join(root, "images")
    os.makedirs(img_dir, exist_ok=True)
    rows, k = [], 0
    for scale in [1, 2, 3, 4, 5, 6, -1, -1, -1]:
        for three in ["non-neoplastic", "benign", "malignant"]:
            for _ in range(per_cell if scale > 0 else 1):
                data = jpeg_bytes(k)
                h = hashlib.md5(data).hexdigest()
                rows.append((h, scale, three, f"{url_base}/{h}.jpg"))
                if with_images:
                    with open(os.path.join(img_dir, f"{h}.jpg"), "wb") as f:
                        f.write(data)
                k += 1
    with open(os.path.join(root, "fitzpatrick17k.csv"), "w") as f:
        f.write(FITZ_HEADER + "\n")
        for h, scale, three, url in rows:
            alnum = "".join(ch for ch in url if ch.isalnum()) + ".jpg"
            f.write(f"{h},{scale},{scale},some condition,{NINE[three]},{three},,{url},{alnum}\n")
    return rows
