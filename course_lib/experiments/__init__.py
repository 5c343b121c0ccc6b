"""The chapters' experiments, built on the training engine: what notebooks 11 and 12 compare.

Taught in notebooks/11_train_nuclei.

``course_lib.training`` is the generic engine (train, resume, evaluate, the command line's
recipes); the runs a chapter sets against each other live here, one module per chapter:

- :mod:`~course_lib.experiments.nuclei`: notebook 11's results table (the seed report's
  experiments: U-Net, Mask R-CNN, anchor scales, holes, backbones), restartable row by row;
- :mod:`~course_lib.experiments.comparison`: notebook 12's paired runs from one start
  (augmentation, transfer learning), their loss curves and scores.
"""
