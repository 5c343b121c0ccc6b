"""Learning-rate schedules: linear warm-up, then steps down (Mask R-CNN paper, Detectron).

Taught in notebooks/11_train_nuclei.

The Mask R-CNN paper trains with SGD at a base rate (0.02 for 16 images a batch), divides it
by 10 late in training (at 120k of 160k iterations on COCO, i.e. 3/4 of the way), and Detectron
starts with a *linear warm-up*: the rate climbs from ``warmup_factor * base`` to ``base`` over
the first ``warmup_steps`` steps, so the first large gradients of a fresh head cannot throw the
pretrained backbone off.

The schedule is a function of the optimizer's step counter (``optimizer.iterations``) only, so
a resumed run picks up the same rate at the same step with nothing else to restore.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="course_lib")
class WarmupStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(step) = base_lr · factor**(number of boundaries ≤ step) · warm-up(step)``.

    Args:
        base_lr: rate after warm-up and before the first boundary (per step, unitless).
        boundaries: optimizer steps (0-based) at which the rate is multiplied by ``factor``;
            increasing integers.
        factor: multiplier applied at each boundary (0.1 in the paper).
        warmup_steps: length of the linear warm-up in steps (0 = none).
        warmup_factor: the rate at step 0 as a fraction of ``base_lr`` (1/3 in Detectron).

    During warm-up (``step < warmup_steps``) the multiplier is
    ``warmup_factor + (1 - warmup_factor) · step / warmup_steps``; from ``warmup_steps`` on it
    is 1. Serialisable (``get_config``), so a model saved with its optimizer keeps it.

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, base_lr: float, boundaries: Sequence[int] = (), factor: float = 0.1,
                 warmup_steps: int = 0, *, warmup_factor: float = 1.0 / 3.0):
        boundaries = [int(b) for b in boundaries]
        if any(b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:], strict=False)):
            raise ValueError(f"boundaries must increase, got {boundaries}")
        if base_lr <= 0 or warmup_steps < 0 or not 0 < warmup_factor <= 1:
            raise ValueError("need base_lr > 0, warmup_steps >= 0 and 0 < warmup_factor <= 1; "
                             f"got {base_lr}, {warmup_steps}, {warmup_factor}")
        self.base_lr = float(base_lr)
        self.boundaries = boundaries
        self.factor = float(factor)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.base_lr, "float32")
        for b in self.boundaries:
            lr = lr * ops.where(step >= b, self.factor, 1.0)
        if self.warmup_steps > 0:
            alpha = ops.minimum(step / self.warmup_steps, 1.0)
            lr = lr * (self.warmup_factor + (1.0 - self.warmup_factor) * alpha)
        return lr

    def value(self, step: int) -> float:
        """The rate at ``step`` as a Python float (NumPy; for plots and logs)."""
        n_drops = sum(step >= b for b in self.boundaries)
        lr = self.base_lr * self.factor ** n_drops
        if self.warmup_steps > 0:
            alpha = min(step / self.warmup_steps, 1.0)
            lr *= self.warmup_factor + (1.0 - self.warmup_factor) * alpha
        return float(np.float32(lr))

    def get_config(self) -> dict:
        return {"base_lr": self.base_lr, "boundaries": list(self.boundaries),
                "factor": self.factor, "warmup_steps": self.warmup_steps,
                "warmup_factor": self.warmup_factor}


def paper_schedule(total_steps: int, base_lr: float = 0.02, drops_at: Sequence[float] = (0.75,),
                   factor: float = 0.1, *, warmup_steps: int = 500,
                   warmup_factor: float = 1.0 / 3.0) -> WarmupStepSchedule:
    """The paper's schedule scaled to ``total_steps``: drops at fractions of the run.

    ``drops_at=(0.75,)`` is the paper's COCO run (120k of 160k); Detectron's 1× schedule
    is ``(2/3, 8/9)`` (60k and 80k of 90k). The warm-up is shortened to a tenth of the run
    when the run is short (quick mode), so it never covers the whole run.

    Taught in notebooks/11_train_nuclei.
    """
    total_steps = int(total_steps)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    boundaries = sorted({max(1, int(round(f * total_steps))) for f in drops_at
                         if 0 < f < 1})
    warm = min(int(warmup_steps), total_steps // 10)
    return WarmupStepSchedule(base_lr, boundaries, factor, warm, warmup_factor=warmup_factor)
