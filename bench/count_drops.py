"""Count what batching loses on the real nuclei: skipped samples and dropped instances.

Run from the repository root inside the venv:

    python bench/count_drops.py [--root ../shared/data/dsb2018/stage1_train] [--limit N]

Batches one epoch of ``MaskRCNNDataset`` over the DSB2018 stage-1 training folder with the
default options (``DsbFolderSamples`` with ``load_sample``'s default repairs, no augmentation,
``max_instances=100``, 28×28 mini-masks) twice in lockstep: at the quick-mode image size and at
the full-mode one (``config.QUICK`` / ``config.FULL``). It prints the samples skipped per reason,
the instances dropped per reason (``DROP_REASONS``) and how many instances reached the batches,
so the cost of a small ``image_size`` or of the instance cap can be read off directly. This is
a count, not a speed measurement; the time printed is only there to size a rerun.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from course_lib import config  # noqa: E402
from course_lib.data.coco import DsbFolderSamples  # noqa: E402
from course_lib.data.pipeline import MaskRCNNDataset  # noqa: E402


class _LastLoads:
    """A provider wrapper remembering the last few loads, so two datasets batching the same
    order read each file once."""

    def __init__(self, provider, keep: int):
        self.provider, self.keep, self.cache = provider, keep, {}

    def __len__(self):
        return len(self.provider)

    def name(self, i):
        return self.provider.name(i)

    def load_with_ignore(self, i):
        # the provider's own report of what its loader dropped is passed on, not hidden
        if i not in self.cache:
            if len(self.cache) >= self.keep:
                self.cache.pop(next(iter(self.cache)))
            try:
                self.cache[i] = ("ok", self.provider.load_with_ignore(i))
            except Exception as err:  # remembered and raised again for the second dataset
                self.cache[i] = ("error", err)
        kind, value = self.cache[i]
        if kind == "error":
            raise value
        image, masks, ids, ignored = value
        return image.copy(), masks.copy(), ids.copy(), ignored

    def load(self, i):
        return self.load_with_ignore(i)[:3]


def main(argv=None) -> int:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path,
                        default=ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    provider = DsbFolderSamples(args.root)
    if args.limit:
        provider.samples = provider.samples[:args.limit]
    shared = _LastLoads(provider, keep=2 * args.batch_size)
    sizes = {"quick": config.QUICK.image_size, "full": config.FULL.image_size}
    sets = {mode: MaskRCNNDataset(shared, batch_size=args.batch_size, image_size=size,
                                  shuffle=False, drop_remainder=False)
            for mode, size in sizes.items()}
    kept = dict.fromkeys(sets, 0)
    ignored = dict.fromkeys(sets, 0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-cap warnings are counted below instead
        for b in range(len(sets["quick"])):
            n_rows = min(args.batch_size, len(provider) - b * args.batch_size)  # no wrap-around
            for mode, ds in sets.items():
                batch = ds[b]
                kept[mode] += int(batch["gt_count"][:n_rows].sum())
                ignored[mode] += int(batch["gt_ignore_count"][:n_rows].sum())
    elapsed = time.perf_counter() - t0
    print(f"{len(provider)} samples from {args.root}, batch size {args.batch_size}, "
          f"{elapsed:.0f} s for both passes (shared machine; not a speed figure)")
    print(f"{'':28s}" + "".join(f"{m} (S={s})".rjust(18) for m, s in sizes.items()))
    rows = {"samples skipped": {m: ds.skip_summary(0)["skipped"] for m, ds in sets.items()}}
    reasons = sorted({r for ds in sets.values() for r in ds.skip_summary(0)["by_reason"]})
    for r in reasons:
        rows[f"  skipped: {r}"] = {m: ds.skip_summary(0)["by_reason"].get(r, 0)
                                   for m, ds in sets.items()}
    drops = {m: ds.drop_summary(0) for m, ds in sets.items()}
    for r in sorted({r for d in drops.values() for r in d} - {"ignore_rows_full"}):
        rows[f"instances {r}"] = {m: drops[m].get(r, 0) for m in sets}
    rows["instances in gt rows"] = kept
    rows["ignore boxes in batches"] = ignored
    rows["ignore rows over max_ignore"] = {m: drops[m].get("ignore_rows_full", 0) for m in sets}
    for label, values in rows.items():
        print(f"{label:28s}" + "".join(f"{values[m]:>18d}" for m in sets))
    for m, ds in sets.items():
        for name, reason, message in ds.skip_summary(0)["samples"][:5]:
            print(f"  {m}: skipped {name} ({reason}): {message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
