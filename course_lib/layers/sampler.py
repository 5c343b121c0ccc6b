"""The balanced sampler: pick a fixed number of labelled candidates, at most a fraction positive.

Taught in notebooks/06_anchors_and_rpn (256 anchors, half positive) and 08_heads_and_losses
(512 RoIs, a quarter positive).

Candidates come labelled by the matcher: 1 positive, 0 negative, -1 ignored. The sampler
returns ``num_samples`` *indices* into the candidates, laid out so that every consumer sees
fixed shapes:

============================  ================================================================
slots ``[0, P)``              the *positive slice*, ``P = round(num_samples * positive_fraction)``:
                              first the sampled positives (``n_pos = min(#positives, P)``, in
                              random order), then negatives filling the rest of the slice
slots ``[P, num_samples)``    negatives
============================  ================================================================

So exactly ``min(num_samples, n_pos + #negatives)`` slots are used, at most ``P`` of them
positive, and the positives always sit in the first ``P`` slots: the mask head runs on the
slice ``[:P]`` only (a fixed size) and weighs its loss by ``labels[:, :P] == 1``. Slots that
cannot be filled (too few candidates) get label -1 and index 0; consumers ignore them.

Randomness without data-dependent shapes: every candidate gets a uniform random key; the
positives with the ``P`` largest keys are taken (``top_k``), and the negatives with the largest
keys fill the remaining slots in key order. Ignored candidates have key -1 and are never taken.
``sample_np`` takes the same keys, so the two implementations can be compared exactly.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def positive_slots(num_samples: int, positive_fraction: float) -> int:
    """``P``: the size of the positive slice, ``round(num_samples * positive_fraction)``.

    Taught in notebooks/08_heads_and_losses.
    """
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}.")
    return int(round(num_samples * positive_fraction))


def sample_np(labels, num_samples: int, positive_fraction: float, keys=None, *, rng=None):
    """Balanced sample of one image's candidates (NumPy reference of :func:`sample_ops`).

    Args:
        labels: ``(N,)`` int in {1, 0, -1}.
        num_samples: ``R`` slots.
        positive_fraction: at most ``round(R * fraction)`` positives.
        keys: ``(N,)`` random keys in [0, 1) (default: drawn from ``rng``); larger is taken first.
        rng: ``numpy.random.Generator``.

    Returns:
        ``(indices (R,) int64, sampled_labels (R,) int32)``; layout in the module docstring.

    Taught in notebooks/08_heads_and_losses.
    """
    labels = np.asarray(labels).reshape(-1)
    if keys is None:
        rng = np.random.default_rng() if rng is None else rng
        keys = rng.random(len(labels))
    keys = np.asarray(keys, np.float64).reshape(-1)
    p = positive_slots(num_samples, positive_fraction)
    # stable sorts on -key: larger key first, ties by index (as top_k does)
    pos = np.flatnonzero(labels == 1)
    pos = pos[np.argsort(-keys[pos], kind="stable")][:p]
    neg = np.flatnonzero(labels == 0)
    neg = neg[np.argsort(-keys[neg], kind="stable")]
    n_pos = len(pos)
    main_neg, filler = neg[:num_samples - p], neg[num_samples - p:num_samples - n_pos]
    indices = np.zeros(num_samples, np.int64)
    out = np.full(num_samples, -1, np.int32)
    indices[:n_pos], out[:n_pos] = pos, 1
    indices[n_pos:n_pos + len(filler)], out[n_pos:n_pos + len(filler)] = filler, 0
    indices[p:p + len(main_neg)], out[p:p + len(main_neg)] = main_neg, 0
    return indices, out


def _top(keys, k: int, width: int):
    """``top_k`` of each row padded to ``width`` columns with key -1 (index 0)."""
    values, index = ops.top_k(keys, k=k, sorted=True)
    index = ops.cast(index, "int32")
    if width > k:
        values = ops.pad(values, ((0, 0), (0, width - k)), constant_values=-1.0)
        index = ops.pad(index, ((0, 0), (0, width - k)))
    return values, index


def sample_ops(labels, num_samples: int, positive_fraction: float, seed=None, *, keys=None):
    """Batched, fixed-shape balanced sampler (``keras.ops``).

    Args:
        labels: ``(B, N)`` int in {1, 0, -1} with static ``N``.
        num_samples: ``R``; positive_fraction: as in :func:`sample_np`.
        seed: int or ``keras.random.SeedGenerator`` for the keys.
        keys: ``(B, N)`` explicit keys in [0, 1) (tests), instead of random ones.

    Returns:
        ``(indices (B, R) int32, sampled_labels (B, R) int32)``.

    Taught in notebooks/08_heads_and_losses.
    """
    labels = ops.cast(labels, "int32")
    n = int(labels.shape[1])
    p = positive_slots(num_samples, positive_fraction)
    if keys is None:
        keys = keras.random.uniform(ops.shape(labels), seed=seed)
    keys = ops.cast(keys, "float32")
    pos_keys = ops.where(labels == 1, keys, -1.0)
    neg_keys = ops.where(labels == 0, keys, -1.0)
    pos_vals, pos_idx = _top(pos_keys, min(max(p, 1), n), max(p, 1))           # (B, >=P)
    pos_vals, pos_idx = pos_vals[:, :p], pos_idx[:, :p]
    neg_vals, neg_idx = _top(neg_keys, min(num_samples, n), num_samples)        # (B, R)
    n_pos = ops.sum(ops.cast(pos_vals >= 0, "int32"), axis=1, keepdims=True)   # (B, 1)
    # Positive slice: slot j < n_pos holds positive j, else negative R - P + (j - n_pos).
    slot = ops.arange(p, dtype="int32")[None, :]
    is_pos = slot < n_pos
    filler_pos = ops.clip(num_samples - p + slot - n_pos, 0, num_samples - 1)
    filler_idx = ops.take_along_axis(neg_idx, filler_pos, axis=1)
    filler_ok = ops.take_along_axis(neg_vals, filler_pos, axis=1) >= 0
    slice_idx = ops.where(is_pos, pos_idx, filler_idx)
    slice_lab = ops.where(is_pos, 1, ops.where(filler_ok, 0, -1))
    rest_idx = neg_idx[:, :num_samples - p]
    rest_lab = ops.where(neg_vals[:, :num_samples - p] >= 0, 0, -1)
    indices = ops.concatenate([slice_idx, rest_idx], axis=1)
    sampled = ops.cast(ops.concatenate([slice_lab, rest_lab], axis=1), "int32")
    indices = ops.where(sampled >= 0, indices, 0)
    return ops.cast(indices, "int32"), sampled


def gather_rows(values, indices):
    """``values (B, N, ...)`` at ``indices (B, R)`` -> ``(B, R, ...)`` (a batched gather).

    Taught in notebooks/08_heads_and_losses.
    """
    values = ops.convert_to_tensor(values)
    indices = ops.cast(indices, "int32")
    n = values.shape[1] if values.shape[1] is not None else ops.shape(values)[1]
    # one gather from the batch flattened into rows (cheaper than a broadcast take_along_axis)
    flat = ops.reshape(values, (-1,) + tuple(values.shape[2:]))
    offsets = ops.arange(ops.shape(values)[0], dtype="int32")[:, None] * n
    return ops.take(flat, indices + offsets, axis=0)
