"""The balanced sampler (course_lib.layers.sampler): a hand-worked layout, the keras.ops twin
against the NumPy reference with the same keys, and the counting rules on random cases."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from course_lib.layers import sampler


def test_hand_worked_layout():
    # 8 candidates: positives at 1, 4, 6; negatives at 0, 2, 3, 7; candidate 5 ignored.
    labels = np.array([0, 1, 0, 0, 1, -1, 1, 0])
    keys = np.array([0.9, 0.2, 0.5, 0.1, 0.8, 0.99, 0.3, 0.7])
    # R = 6, fraction 1/3 -> P = 2 positive slots: positives by key 4 (0.8), 6 (0.3); 1 is
    # dropped. Then negatives by key: 0 (0.9), 7 (0.7), 2 (0.5), 3 (0.1) fill slots 2..5.
    idx, lab = sampler.sample_np(labels, 6, 1 / 3, keys=keys)
    np.testing.assert_array_equal(idx, [4, 6, 0, 7, 2, 3])
    np.testing.assert_array_equal(lab, [1, 1, 0, 0, 0, 0])
    got_idx, got_lab = sampler.sample_ops(labels[None], 6, 1 / 3, keys=keys[None])
    np.testing.assert_array_equal(ops.convert_to_numpy(got_idx)[0], idx)
    np.testing.assert_array_equal(ops.convert_to_numpy(got_lab)[0], lab)


def test_few_positives_leave_fillers_in_the_positive_slice():
    # one positive (index 2), P = 3: slot 0 = the positive, slots 1-2 = negatives ranked after
    # the R - P = 3 main ones. Negatives by key: 0 (0.9), 1 (0.8), 3 (0.6), 4 (0.5), 5 (0.4).
    labels = np.array([0, 0, 1, 0, 0, 0])
    keys = np.array([0.9, 0.8, 0.1, 0.6, 0.5, 0.4])
    idx, lab = sampler.sample_np(labels, 6, 0.5, keys=keys)
    # main negatives (slots 3..5): 0, 1, 3; fillers (slots 1..2): 4, 5
    np.testing.assert_array_equal(idx, [2, 4, 5, 0, 1, 3])
    np.testing.assert_array_equal(lab, [1, 0, 0, 0, 0, 0])
    got_idx, got_lab = sampler.sample_ops(labels[None], 6, 0.5, keys=keys[None])
    np.testing.assert_array_equal(ops.convert_to_numpy(got_idx)[0], idx)
    np.testing.assert_array_equal(ops.convert_to_numpy(got_lab)[0], lab)


def test_too_few_candidates_leave_empty_slots():
    labels = np.array([1, -1, 0])
    idx, lab = sampler.sample_np(labels, 6, 0.5, keys=np.array([0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(lab, [1, -1, -1, 0, -1, -1])
    np.testing.assert_array_equal(idx[lab >= 0], [0, 2])
    got_idx, got_lab = sampler.sample_ops(labels[None], 6, 0.5, keys=np.full((1, 3), 0.5))
    np.testing.assert_array_equal(ops.convert_to_numpy(got_lab)[0], lab)
    np.testing.assert_array_equal(ops.convert_to_numpy(got_idx)[0][lab >= 0], [0, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_twin_equals_reference_and_rules_hold(seed):
    rng = np.random.default_rng(seed)
    n, r, frac = 300, 64, 0.25
    labels = rng.choice([1, 0, -1], size=(3, n), p=[0.05 + 0.1 * seed, 0.6, 0.35 - 0.1 * seed])
    keys = rng.random((3, n))
    got_idx, got_lab = (ops.convert_to_numpy(t)
                        for t in sampler.sample_ops(labels, r, frac, keys=keys))
    p = sampler.positive_slots(r, frac)
    for i in range(3):
        idx, lab = sampler.sample_np(labels[i], r, frac, keys=keys[i])
        np.testing.assert_array_equal(got_idx[i], idx)
        np.testing.assert_array_equal(got_lab[i], lab)
        n_pos = min((labels[i] == 1).sum(), p)
        assert (lab == 1).sum() == n_pos and np.all(lab[:n_pos] == 1)   # positives first
        assert (lab >= 0).sum() == min(r, n_pos + (labels[i] == 0).sum())
        used = idx[lab >= 0]
        assert len(np.unique(used)) == len(used)                        # no candidate twice
        np.testing.assert_array_equal(labels[i][used], lab[lab >= 0])   # labels kept


def test_random_keys_are_seeded():
    labels = np.random.default_rng(0).choice([1, 0], size=(1, 200))
    a, _ = sampler.sample_ops(labels, 32, 0.25, seed=7)
    b, _ = sampler.sample_ops(labels, 32, 0.25, seed=7)
    np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))


def test_gather_rows():
    values = np.arange(2 * 5 * 4, dtype="float32").reshape(2, 5, 4)
    idx = np.array([[4, 0], [1, 1]])
    got = ops.convert_to_numpy(sampler.gather_rows(values, idx))
    np.testing.assert_array_equal(got, np.stack([values[0][[4, 0]], values[1][[1, 1]]]))
