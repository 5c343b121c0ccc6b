"""Training engine: Keras ``fit`` with schedules, stages, resumable checkpoints, evaluation.

Taught in notebooks/11_train_nuclei.

The pieces, one module each:

- :mod:`~course_lib.training.schedules`: warm-up then step learning rate (the paper's);
- :mod:`~course_lib.training.checkpoints`: atomic, checksummed checkpoints and their manager;
- :mod:`~course_lib.training.callbacks`: checkpoint writer, NaN/inf guard, lr logger;
- :mod:`~course_lib.training.data`: the epoch view that makes the data order resumable;
- :mod:`~course_lib.training.engine`: :func:`train`, :class:`TrainConfig`, :class:`Stage`;
- :mod:`~course_lib.training.distribute`: data parallelism over several devices;
- :mod:`~course_lib.training.evaluate`: DSB score, submission CSV, prediction export;
- :mod:`~course_lib.training.recipes`: ready-made U-Net and Mask R-CNN runs (the CLI's).
"""

from course_lib.training.callbacks import NonFiniteLossError
from course_lib.training.checkpoints import (
    CheckpointError,
    CheckpointManager,
    restore_model,
    restore_optimizer,
)
from course_lib.training.data import EpochView
from course_lib.training.distribute import DataParallel, data_parallel
from course_lib.training.engine import (
    RunFolderError,
    Stage,
    TrainConfig,
    TrainResult,
    apply_precision,
    make_optimizer,
    make_schedule,
    set_trainable,
    train,
)
from course_lib.training.schedules import WarmupStepSchedule, paper_schedule

__all__ = ["CheckpointError", "CheckpointManager", "DataParallel", "EpochView",
           "NonFiniteLossError", "RunFolderError", "Stage", "TrainConfig", "TrainResult",
           "WarmupStepSchedule", "apply_precision", "data_parallel", "make_optimizer",
           "make_schedule", "paper_schedule", "restore_model", "restore_optimizer",
           "set_trainable", "train"]
