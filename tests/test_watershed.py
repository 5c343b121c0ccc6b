"""Instances from semantic maps: connected components merge touching disks, watershed splits them."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from course_lib.metrics import dsb_average_precision, iou_matrix
from course_lib.ops import watershed
from course_lib.ops.weight_map import three_class_target


def _touching_disks(radius: int = 12, overlap: int = 4) -> np.ndarray:
    """Two disks whose outlines overlap by ``overlap`` px (the second one wins the overlap)."""
    labels = np.zeros((60, 90), np.int32)
    c1 = (30, 25)
    c2 = (30, 25 + 2 * radius - overlap)
    labels[disk(c1, radius, shape=labels.shape)] = 1
    labels[disk(c2, radius, shape=labels.shape)] = 2
    return labels


def test_connected_components_merge_touching_disks():
    truth = _touching_disks()
    got = watershed.connected_components(truth > 0)
    assert got.max() == 1  # one blob: the failure the watershed fixes
    assert got.dtype == np.int32


def test_watershed_splits_two_touching_disks():
    truth = _touching_disks()
    got = watershed.watershed_instances(truth > 0, min_distance=5)
    assert got.max() == 2
    iou = iou_matrix(truth, got)
    # each true disk matches one predicted instance with IoU > 0.8 (B1's metrics as oracle)
    assert (iou.max(axis=1) > 0.8).all()
    assert dsb_average_precision(truth, got) > 0.7


def test_watershed_on_probabilities_and_edge_cases():
    truth = _touching_disks()
    prob = np.where(truth > 0, 0.9, 0.1).astype(np.float32)
    assert watershed.watershed_instances(prob, threshold=0.5).max() == 2
    assert watershed.watershed_instances(np.zeros((10, 10))).max() == 0
    # a lone 1-pixel blob still becomes an instance; min_size drops it
    dot = np.zeros((10, 10), bool)
    dot[5, 5] = True
    assert watershed.watershed_instances(dot).max() == 1
    assert watershed.watershed_instances(dot, min_size=2).max() == 0
    with pytest.raises(ValueError, match="H×W"):
        watershed.watershed_instances(np.zeros((4, 4, 2)))


def test_three_class_seeds_grow_back_into_the_nuclei():
    truth = _touching_disks(overlap=6)
    classes = three_class_target(truth)
    got = watershed.instances_from_three_class(classes)
    assert got.max() == 2
    iou = iou_matrix(truth, got)
    assert (iou.max(axis=1) > 0.9).all()  # the border pixels are given back
    np.testing.assert_array_equal(got > 0, truth > 0)
    # the same through one-hot "probabilities"
    probs = np.eye(3, dtype=np.float32)[classes]
    np.testing.assert_array_equal(watershed.instances_from_three_class(probs), got)


def test_three_class_region_without_seed_is_kept():
    classes = np.zeros((8, 8), np.uint8)
    classes[2:4, 2:4] = 2  # a border-only blob: no interior seed
    got = watershed.instances_from_three_class(classes)
    assert got.max() == 1 and (got > 0).sum() == 4


def test_three_class_thresholds_trim_the_rim_and_the_seeds():
    """Hand-worked: a 6×6 nucleus whose outer ring is uncertain (p_background 0.4, border
    0.5, interior 0.1) around a 4×4 core (interior 0.8, background 0.05). By argmax the ring
    is nucleus (border 0.5 beats 0.4): 36 px. With foreground_threshold 0.3 it needs
    p_background < 0.3, so only the 16-px core remains. An interior_threshold of 0.9 leaves
    no seed: the core is kept as a seedless region."""
    probs = np.zeros((10, 10, 3), np.float32)
    probs[..., 0] = 1.0
    probs[2:8, 2:8] = (0.4, 0.1, 0.5)
    probs[3:7, 3:7] = (0.05, 0.8, 0.15)
    assert (watershed.instances_from_three_class(probs) > 0).sum() == 36
    trimmed = watershed.instances_from_three_class(probs, foreground_threshold=0.3)
    assert trimmed.max() == 1 and (trimmed > 0).sum() == 16
    assert (trimmed[3:7, 3:7] == 1).all()
    unseeded = watershed.instances_from_three_class(probs, interior_threshold=0.9,
                                                    foreground_threshold=0.3)
    np.testing.assert_array_equal(unseeded, trimmed)
    # a class map has no probabilities to threshold: the setting changes nothing
    classes = probs.argmax(-1)
    np.testing.assert_array_equal(
        watershed.instances_from_three_class(classes, foreground_threshold=0.3),
        watershed.instances_from_three_class(classes))


def _grid_of_nuclei() -> np.ndarray:
    """Hand-built: 1|2 share an edge, 3 and 4 have a 1-px gap, 5 touches 4 at a corner only."""
    labels = np.zeros((12, 14), np.int32)
    labels[1:4, 1:4] = 1
    labels[1:4, 4:7] = 2          # adjacent to 1 (columns 3 and 4)
    labels[6:9, 1:4] = 3
    labels[6:9, 5:8] = 4          # column 4 is background: chessboard distance 2 to 3
    labels[9:11, 8:10] = 5        # (8, 7) of 4 and (9, 8) of 5 are diagonal neighbours
    return labels


def test_touching_pairs_hand_worked():
    labels = _grid_of_nuclei()
    assert watershed.touching_pairs(labels) == [(1, 2), (4, 5)]
    assert watershed.touching_pairs(labels, max_gap=2) == [(1, 2), (3, 4), (4, 5)]
    assert watershed.touching_pairs(np.zeros((5, 5), np.int32)) == []
    with pytest.raises(ValueError):
        watershed.touching_pairs(labels, max_gap=0)


def test_merged_touching_pairs_hand_worked():
    truth = _grid_of_nuclei()
    # the prediction is the truth's foreground as one blob per connected group (8-neighbours)
    from skimage import measure

    blobs = measure.label(truth > 0, connectivity=2)
    assert watershed.merged_touching_pairs(truth, blobs) == (2, 2)      # 1+2 and 4+5 glued
    assert watershed.merged_touching_pairs(truth, truth) == (0, 2)      # perfect: no merge
    # nucleus 2 missed (background in the prediction): a miss, not a merge
    missed = np.where(truth == 2, 0, blobs)
    assert watershed.merged_touching_pairs(truth, missed) == (1, 2)
    # one prediction covering 1 fully but only a third of 2: 2 has no owner, no merge
    partial = np.zeros_like(truth)
    partial[1:4, 1:5] = 7
    assert watershed.merged_touching_pairs(truth, partial) == (0, 2)
    with pytest.raises(ValueError, match="shapes"):
        watershed.merged_touching_pairs(truth, truth[:5])
