"""The provider wrappers (a train/validation split, a decode cache) keep what the wrapped
provider reports beside its instances: ignore regions and the loader's drops reach the dataset."""

from __future__ import annotations

import numpy as np

from course_lib.data.pipeline import MaskRCNNDataset
from course_lib.data.samples import IgnoreRegions
from course_lib.models.unet_training import CachedSamples
from course_lib.training.recipes import SubsetSamples


class _CrowdProvider:
    """Two 32×32 images; each has one nucleus (rows 4:12, cols 4:12) and one crowd region
    (rows 20:28, cols 16:30) that the provider could not hand over as an instance."""

    def __len__(self):
        return 2

    def load(self, index):
        image = np.full((32, 32, 3), 10 * (index + 1), np.uint8)
        masks = np.zeros((32, 32, 1), bool)
        masks[4:12, 4:12, 0] = True
        return image, masks, np.ones(1, np.int32)

    def load_with_ignore(self, index):
        image, masks, ids = self.load(index)
        crowd = np.zeros((32, 32, 1), bool)
        crowd[20:28, 16:30, 0] = True
        return image, masks, ids, IgnoreRegions(crowd, ("crowd",), {"empty_mask": 1})


class _PlainProvider:
    """The same samples from a provider without the optional ``load_with_ignore``."""

    def __len__(self):
        return 2

    def load(self, index):
        return _CrowdProvider().load(index)


def _batch(provider):
    ds = MaskRCNNDataset(provider, batch_size=1, image_size=32, max_instances=4, max_ignore=2,
                         shuffle=False)
    return ds, ds[0]


def test_subset_and_cache_forward_ignore_regions_and_drops():
    for wrapped in (SubsetSamples(_CrowdProvider(), [1]), CachedSamples(_CrowdProvider())):
        ds, batch = _batch(wrapped)
        assert batch["gt_ignore_count"].tolist() == [1]
        # image 32×32 at image_size 32: scale 1, window (0, 0, 32, 32), so the crowd box is
        # its tight box in pixel edges, worked by hand: (20, 16, 28, 30)
        np.testing.assert_array_equal(batch["gt_ignore_boxes"][0, 0], [20, 16, 28, 30])
        summary = ds.drop_summary()
        assert summary.get("crowd") == 1 and summary.get("empty_mask") == 1, summary


def test_wrappers_of_a_plain_provider_offer_no_ignore_method():
    for wrapped in (SubsetSamples(_PlainProvider(), [0, 1]), CachedSamples(_PlainProvider())):
        assert not hasattr(wrapped, "load_with_ignore")
        _, batch = _batch(wrapped)
        assert batch["gt_ignore_count"].tolist() == [0]
        assert batch["gt_count"].tolist() == [1]
