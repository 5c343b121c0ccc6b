"""course_lib: the tested helper library behind the instance-segmentation course.

One module per concept, in the order data flows: ``data`` (files to samples to batches),
``ops`` (pure box, anchor, NMS, RoI and mask operations: a NumPy reference beside a
``keras.ops`` twin), ``layers`` and ``models`` (Keras), ``losses``, ``metrics``, ``training``,
``viz`` (plots and widgets) and ``exercises`` (the checks exercise notebooks call).

Importing ``course_lib`` is cheap: submodules are imported where used.
"""

import glob as _glob
import os as _os

__version__ = "0.1.0"


def _quiet_tensorflow_logs() -> None:
    """Keep TensorFlow's C++ start-up lines out of the learner's cell outputs.

    TensorFlow's C++ core logs straight to the process' stderr, which Jupyter shows under the
    cell: "Could not find cuda drivers" and "oneDNN custom operations are on" (INFO),
    "oneDNN supports DT_INT64 only..." (WARNING), and on a machine without an NVIDIA driver
    "failed call to cuInit" (logged as an ERROR although nothing is wrong). These read like
    failures to a learner. The level must be set before TensorFlow is imported, which is why
    it happens here: every notebook imports ``course_lib`` in its first cell, before Keras.

    Level 2 hides INFO and WARNING; level 3 also hides ERROR, used only when no NVIDIA driver
    is present (then the cuInit "error" is expected, and a GPU machine keeps its real errors).
    A value the user set wins (``setdefault``). Python exceptions are never affected.
    """
    has_nvidia_driver = _os.path.exists("/proc/driver/nvidia/version") or bool(
        _glob.glob("/dev/nvidia[0-9]*"))
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_nvidia_driver else "3")
    # TensorFlow 2.21 logs through abseil, which ignores the variable until TensorFlow calls
    # absl::InitializeLog (it does not); the import hook applies the level to those lines.
    from course_lib import _tf_logs
    _tf_logs.install("tensorflow")


_quiet_tensorflow_logs()
