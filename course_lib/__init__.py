"""course_lib: the tested helper library behind the instance-segmentation course.

One module per concept, in the order data flows: ``data`` (files to samples to batches),
``ops`` (pure box, anchor, NMS, RoI and mask operations: a NumPy reference beside a
``keras.ops`` twin), ``layers`` and ``models`` (Keras), ``losses``, ``metrics``, ``training``,
``viz`` (plots and widgets) and ``exercises`` (the checks exercise notebooks call).

Importing ``course_lib`` is cheap: submodules are imported where used.
"""

__version__ = "0.1.0"
