"""Groups as the product of one or more per-sample attributes (intersectional groups), one
mechanism for every dataset kind.

`combine` turns several attribute columns into one group id per sample plus a readable name per
group. The order is the product order of the attributes' domains, first attribute slowest (as
itertools.product): with `Male` (female, male) x `Young` (old, young) the groups are
0 "female & old", 1 "female & young", 2 "male & old", 3 "male & young". A single attribute gives
its values' positions in its domain as ids and its value names as names, unchanged.

Empty combinations (no sample in the data passed in) are handled by `empty`:
  "keep"  every combination of the domains is a group, an empty one included (CelebA, whose
          domains are fixed: ids then never depend on which samples a split holds; an empty
          group gets metric rows with n = 0)
  "drop"  combinations with no sample are not groups; the others keep product order and are
          numbered 0..K-1 without gaps (images_csv, whose domains are the values observed, so a
          combination never observed, e.g. a clinic that only sees one sex, is not a group)
numpy only.
"""

from __future__ import annotations

import numpy as np

SEPARATOR = " & "
EMPTY_POLICIES = ("keep", "drop")


def attribute_list(value, what="group") -> list:
    """A config's group attribute(s), one name or a list of names -> a non-empty list of distinct
    strings; ValueError naming the value otherwise."""
    names = [value] if isinstance(value, str) else value
    if (
        not isinstance(names, (list, tuple))
        or not names
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(f"{what} {value!r} is invalid; give one column/attribute name or a list of distinct names")
    return list(names)


def combine(columns, domains, value_names, empty="keep"):
    """columns: one array per attribute, each (N,) of that attribute's values; domains: per
    attribute, the values it can take, in order; value_names: per attribute, a readable name per
    domain value. Returns (ids int64 (N,), group names, group values: the tuple of domain values
    of each group). Order and empty combinations: see the module docstring. A value outside its
    attribute's domain raises ValueError naming it."""
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"combine: empty={empty!r} is invalid; valid: {', '.join(EMPTY_POLICIES)}")
    if not (len(columns) == len(domains) == len(value_names)) or not columns:
        raise ValueError("combine: pass one column, one domain and one list of value names per attribute")
    n = len(columns[0])
    ids = np.zeros(n, np.int64)
    for k, (col, dom, names) in enumerate(zip(columns, domains, value_names)):
        col = np.asarray(col)
        if len(col) != n:
            raise ValueError(f"combine: attribute {k} has {len(col)} values, attribute 0 has {n}")
        if len(names) != len(dom):
            raise ValueError(f"combine: attribute {k} has {len(dom)} domain values but {len(names)} value names")
        codes = np.full(n, -1, np.int64)
        for i, v in enumerate(dom):
            codes[col == v] = i
        if (codes < 0).any():
            bad = col[np.flatnonzero(codes < 0)[0]]
            raise ValueError(f"combine: attribute {k} holds the value {bad!r}, which is not in its domain {list(dom)}")
        ids = ids * len(dom) + codes  # mixed radix: the first attribute is the most significant digit
    combos = [()]
    for dom in domains:
        combos = [c + (i,) for c in combos for i in range(len(dom))]
    names = [SEPARATOR.join(str(value_names[k][i]) for k, i in enumerate(c)) for c in combos]
    values = [tuple(domains[k][i] for k, i in enumerate(c)) for c in combos]
    if empty == "drop":
        present = np.unique(ids)  # sorted: product order is kept
        remap = np.full(len(combos), -1, np.int64)
        remap[present] = np.arange(len(present))
        ids = remap[ids]
        names = [names[i] for i in present]
        values = [values[i] for i in present]
    return ids, names, values


def cell_counts(y, g, n_classes, n_groups) -> list:
    """[[count of label c in group k for k in groups] for c in classes], plain ints (meta.json)."""
    y, g = np.asarray(y, np.int64), np.asarray(g, np.int64)
    counts = np.zeros((n_classes, n_groups), np.int64)
    np.add.at(counts, (y, g), 1)
    return counts.tolist()


def wilson_width(n: int, p: float = 0.5, z: float = 1.959964) -> float:
    """Width (upper - lower) of the 95% Wilson score interval of a proportion p measured on n
    samples; at p = 0.5, where it is widest, it bounds how precisely an accuracy on n samples
    can be known. inf for n = 0."""
    if n <= 0:
        return float("inf")
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(2 * half)
