"""Build the residual blocks and the FPN under a second Keras backend (JAX or PyTorch).

Model code must use Keras layers / keras.ops only; this runs the construction and one forward
pass in a subprocess with KERAS_BACKEND set, and skips when neither JAX nor PyTorch is installed.
"""

from __future__ import annotations

import pytest
from other_backends import OTHER_BACKENDS as BACKENDS
from other_backends import run_under_backend

SCRIPT = """
import numpy as np, keras
assert keras.backend.backend() == {backend!r}, keras.backend.backend()
from course_lib.layers import resnet, fpn
x = keras.Input((32, 32, 16))
m = keras.Model(x, [resnet.bottleneck_block(x, 8, stride=2, name="b"),
                    resnet.basic_block(x, 16, name="c")])
a, b = m(np.ones((1, 32, 32, 16), "float32"))
assert tuple(a.shape) == (1, 16, 16, 32) and tuple(b.shape) == (1, 32, 32, 16)
model = fpn.build_backbone("light", (64, 64, 3), channels=16)
outs = model(np.zeros((1, 64, 64, 3), "float32"))
assert [tuple(o.shape)[1] for o in outs] == [16, 8, 4, 2, 1]
assert resnet.resnet(50).count_params() == 23587712
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(not BACKENDS, reason="neither jax nor torch is installed: only TensorFlow "
                                         "is available to test")
@pytest.mark.other_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_blocks_build_on_other_backend(backend):
    assert "ok" in run_under_backend(backend, SCRIPT.format(backend=backend))
