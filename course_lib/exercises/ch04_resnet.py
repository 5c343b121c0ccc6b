"""Exercise checks of notebooks/04_resnet: the bottleneck block.

Taught in notebooks/04_resnet.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, allclose, check_function

BOTTLENECK_CASES = [
    Case("first block of conv2: 64 channels in, filters 64, stride 1, projected shortcut",
         ((16, 16, 64), 64, 1, True)),
    Case("identity shortcut: 256 channels in, filters 64", ((8, 8, 256), 64, 1, False)),
    Case("first block of a later stage: stride 2 halves the size (9 -> 5, odd side)",
         ((9, 9, 32), 16, 2, True)),
]


def _set_deterministic_weights(model) -> None:
    """Give every variable values that depend only on its layer type and shape.

    Two correct blocks then compute the same function however their layers were created or
    named (layers of equal shape get equal weights, so swapping them changes nothing).
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            values = []
            for var in layer.weights:
                shape = tuple(var.shape)
                rng = np.random.default_rng([7, *shape])  # the shape is the seed
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                scale = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.1
                values.append((rng.normal(size=shape) * scale).astype("float32"))
            layer.set_weights(values)
        elif isinstance(layer, keras.layers.BatchNormalization):
            c = layer.weights[0].shape[0]
            rng = np.random.default_rng(c)
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])


def _bottleneck_summary(block_fn, input_shape, filters, stride, conv_shortcut) -> dict:
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input(input_shape)
    y = block_fn(x, filters, stride, conv_shortcut)
    model = keras.Model(x, y)
    _set_deterministic_weights(model)
    data = np.random.default_rng(1).normal(size=(1, *input_shape)).astype("float32")
    return {"parameters": model.count_params(), "output shape": tuple(y.shape[1:]),
            "output": np.asarray(model(data, training=False))}


def _bottleneck_reference(input_shape, filters, stride, conv_shortcut):
    from course_lib.layers import resnet

    def block(x, f, s, c):
        return resnet.bottleneck_block(x, f, stride=s, conv_shortcut=c, name="reference")

    return _bottleneck_summary(block, input_shape, filters, stride, conv_shortcut)


def _compare_blocks(got: dict, expected: dict) -> str | None:
    for key in ("parameters", "output shape"):
        if got[key] != expected[key]:
            return f"{key}: {got[key]} instead of {expected[key]}"
    return allclose(got["output"], expected["output"], atol=1e-3, rtol=1e-3)


def check_bottleneck_block(fn: Callable) -> bool:
    """Check ``bottleneck(x, filters, stride, conv_shortcut)`` (Keras tensors) against the library.

    Compares the parameter count, the output shape, and the outputs once both blocks have the
    same weights (set by layer type and shape, so layer names and order do not matter).

    Taught in notebooks/04_resnet.
    """
    def learner(input_shape, filters, stride, conv_shortcut):
        return _bottleneck_summary(fn, input_shape, filters, stride, conv_shortcut)

    return check_function(
        learner, _bottleneck_reference, BOTTLENECK_CASES, name="bottleneck_block",
        compare=_compare_blocks,
        hint="1x1 (filters, stride here) -> BN -> relu -> 3x3 same (filters) -> BN -> relu -> "
             "1x1 (4*filters) -> BN; the shortcut is a 1x1 conv (4*filters, same stride) + BN, or "
             "x itself; add, then relu. Convolutions keep their bias; BN uses epsilon=1.001e-5.",
    )
