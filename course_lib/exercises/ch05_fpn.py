"""Exercise checks of notebooks/05_fpn: one top-down merge, the whole top-down pathway.

Taught in notebooks/05_fpn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, allclose, check_function

_FPN_RNG = np.random.default_rng(5)
UPSAMPLE_ADD_CASES = [
    Case("hand-worked 2x2 -> 4x4 plus ones",
         (np.array([[1.0, 2.0], [3.0, 4.0]])[..., None], np.ones((4, 4, 1)))),
    Case("several channels", (_FPN_RNG.normal(size=(3, 5, 4)), _FPN_RNG.normal(size=(6, 10, 4)))),
    Case("with a batch axis (N, h, w, C)",
         (_FPN_RNG.normal(size=(2, 2, 3, 2)), _FPN_RNG.normal(size=(2, 4, 6, 2)))),
    Case("a 1x1 level, the coarsest on a small image", (np.full((1, 1, 3), 2.0), np.zeros((2, 2, 3)))),
]


def _upsample_add_reference(higher, lateral):
    from course_lib.layers import fpn

    return fpn.upsample_add(higher, lateral)


def check_upsample_add(fn: Callable) -> bool:
    """Check ``upsample_add(higher (.., h, w, C), lateral (.., 2h, 2w, C))``.

    Taught in notebooks/05_fpn.
    """
    return check_function(
        fn, _upsample_add_reference, UPSAMPLE_ADD_CASES, name="upsample_add",
        hint="nearest-neighbour x2 copies each cell into a 2x2 block: np.repeat along the "
             "height axis (-3) and the width axis (-2), then add the lateral.",
    )


TOP_DOWN_CASES = [
    Case("four levels of a 64-pixel image, 3 channels",
         ([_FPN_RNG.normal(size=(16 // 2**i, 16 // 2**i, 3)) for i in range(4)],)),
    Case("constant levels: M2 = 1 + 10 + 100 + 1000",
         ([np.full((8 // 2**i, 8 // 2**i, 1), 10.0**i) for i in range(4)],)),
    Case("rectangular levels with a batch axis",
         ([_FPN_RNG.normal(size=(1, 8 // 2**i, 16 // 2**i, 2)) for i in range(4)],)),
]


def _top_down_reference(laterals):
    from course_lib.layers import fpn

    merged = [np.asarray(laterals[3])]
    for lateral in reversed(laterals[:3]):
        merged.insert(0, fpn.upsample_add(merged[0], lateral))
    return merged


def _compare_levels(got: list, expected: list) -> str | None:
    """Compare [M2, M3, M4, M5] level by level from the top (an error at M4 spoils M3 and M2
    too, so the first wrong level from the top is where the mistake is); name that level."""
    for level, g, e in reversed(list(zip(range(2, 6), got, expected, strict=True))):
        reason = allclose(g, e)
        if reason is not None:
            hint = (" (M5 is L5 itself, unchanged)" if level == 5 else
                    f" (M{level} = up(M{level + 1}) + L{level})")
            return f"level M{level} is wrong{hint}: {reason}"
    return None


def check_top_down(fn: Callable) -> bool:
    """Check ``top_down(laterals [L2, L3, L4, L5]) -> [M2, M3, M4, M5]`` (NumPy).

    Compares the four maps level by level and names the first wrong one ("level M3 is wrong").

    Taught in notebooks/05_fpn.
    """
    def learner(laterals):
        out = fn(laterals)
        if len(out) != 4:
            raise ValueError(f"return four maps [M2, M3, M4, M5], not {len(out)}")
        return [np.asarray(m) for m in out]

    return check_function(
        learner, _top_down_reference, TOP_DOWN_CASES, name="top_down", compare=_compare_levels,
        hint="start from the top: M5 = L5; then M4 = up(M5) + L4, M3 = up(M4) + L3, "
             "M2 = up(M3) + L2; return them finest first.",
    )
