"""Deterministic synthetic look-alikes written in the real on-disk layouts.

Taught in notebooks/01_data_tour.

``make_nuclei`` writes the DSB2018 ``stage1_train`` layout; ``make_voc`` the Pascal VOC 2012
layout. The real loaders read both, so the course runs offline with the same code path.
"""

from course_lib.data.synthetic.nuclei import make_nuclei  # noqa: F401
from course_lib.data.synthetic.voc import make_voc  # noqa: F401
