"""Exercise checks of notebooks/12_train_voc: the warm-up and step learning-rate schedule.

Taught in notebooks/12_train_voc.
"""

from __future__ import annotations

from collections.abc import Callable

from course_lib.exercises.checking import Case, check_function

#: ``(step, base_lr, warmup_steps, warmup_factor, boundaries, factor)``: before, during and
#: after the warm-up, after one and two drops, and a drop inside the warm-up.
WARMUP_STEP_LR_CASES = [
    Case("no warm-up, no drop yet: the base rate", (5, 0.02, 0, 1 / 3, [], 0.1)),
    Case("step 0 of a 100-step warm-up from 1/3: warmup_factor · base_lr",
         (0, 0.02, 100, 1 / 3, [300], 0.1)),
    Case("half-way through the warm-up (step 50 of 100)", (50, 0.02, 100, 1 / 3, [300], 0.1)),
    Case("the first step after the warm-up (step 100 of 100): the base rate",
         (100, 0.02, 100, 1 / 3, [300], 0.1)),
    Case("just after the first drop (boundary 300 counts from step 300 on)",
         (300, 0.02, 100, 1 / 3, [300, 360], 0.1)),
    Case("after both drops", (370, 0.02, 100, 1 / 3, [300, 360], 0.1)),
    Case("a drop inside the warm-up: both multipliers apply", (5, 1.0, 10, 0.5, [4], 0.1)),
]


def _warmup_step_lr_reference(step, base_lr, warmup_steps, warmup_factor, boundaries, factor):
    from course_lib.training.schedules import WarmupStepSchedule

    return WarmupStepSchedule(base_lr, boundaries, factor, warmup_steps,
                              warmup_factor=warmup_factor).value(step)


def check_warmup_step_lr(fn: Callable) -> bool:
    """Check ``warmup_step_lr(step, base_lr, warmup_steps, warmup_factor, boundaries, factor)
    -> float`` against :class:`course_lib.training.WarmupStepSchedule`.

    Taught in notebooks/12_train_voc.
    """
    return check_function(
        fn, _warmup_step_lr_reference, WARMUP_STEP_LR_CASES, name="warmup_step_lr",
        hint="count the boundaries b with step >= b and multiply base_lr by factor that many "
             "times; during the warm-up (step < warmup_steps) multiply by warmup_factor + "
             "(1 - warmup_factor) * step / warmup_steps, else by 1.",
    )
