"""Shared contract test for course_lib Keras layers (import it from any layer's tests).

Taught in notebooks/06_anchors_and_rpn (the layers it checks); used by every layer test.

``check_layer_contract(layer, inputs)`` checks, for one layer and concrete inputs:

1. *Serialisation round trip*: ``keras.saving.serialize_keras_object`` then
   ``deserialize_keras_object`` (which goes through ``get_config`` / ``from_config`` and needs the
   class registered) gives a layer of the same class and config that, once its weights are copied
   over, returns the same outputs.
2. *Output shapes*: equal ``expected_shapes`` when given, and equal ``compute_output_shape``
   when the layer defines it.
3. *Graph mode and training*: the layer runs inside a functional model built on ``keras.Input``
   with fixed batch shapes (traced symbolically, as in a real model) with unchanged output
   shapes; when it has trainable weights, one SGD step of that model changes them.
"""

from __future__ import annotations

import keras
import numpy as np


def _flatten(x):
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in _flatten(x[k])]
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _flatten(item)]
    return [x]


def _map(fn, x):
    if isinstance(x, dict):
        return {k: _map(fn, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_map(fn, v) for v in x)
    return fn(x)


def _shape(t):
    return tuple(int(d) for d in keras.ops.shape(t))


def check_layer_contract(layer: keras.layers.Layer, inputs, expected_shapes=None,
                         train: bool = True, atol: float = 1e-5) -> list[np.ndarray]:
    """Run the contract on ``layer`` with ``inputs`` (array, or nested list/tuple/dict of arrays).

    Args:
        layer: a fresh (or built) layer instance.
        inputs: concrete inputs the layer is called on, as in a model.
        expected_shapes: optional list of output shapes (flattened order).
        train: run the one-step training check when the layer has trainable weights.
        atol: tolerance of the output comparison after the round trip.

    Returns:
        the layer's outputs as NumPy arrays (flattened), for further checks by the caller.
    """
    inputs = _map(lambda a: np.asarray(a), inputs)
    outputs = [keras.ops.convert_to_numpy(o) for o in _flatten(layer(inputs))]

    # 1. serialisation round trip, weights copied
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer), f"round trip gave {type(clone).__name__}"
    assert clone.get_config() == layer.get_config(), "config changed in the round trip"
    clone(inputs)  # build
    clone.set_weights(layer.get_weights())
    for var_new, var_old in zip(clone.non_trainable_variables, layer.non_trainable_variables,
                                strict=True):
        var_new.assign(var_old)  # includes seed-generator state, so random layers match too
    again = [keras.ops.convert_to_numpy(o) for o in _flatten(layer(inputs))]
    cloned = [keras.ops.convert_to_numpy(o) for o in _flatten(clone(inputs))]
    assert len(cloned) == len(outputs)
    for i, (a, b) in enumerate(zip(again, cloned, strict=True)):
        assert a.shape == b.shape, f"output {i}: shape {b.shape} after round trip, {a.shape} before"
        np.testing.assert_allclose(b, a, atol=atol, err_msg=f"output {i} differs after round trip")

    # 2. output shapes
    shapes = [tuple(o.shape) for o in outputs]
    if expected_shapes is not None:
        assert shapes == [tuple(s) for s in expected_shapes], f"shapes {shapes}"
    try:
        declared = layer.compute_output_shape(_map(lambda a: tuple(a.shape), inputs))
    except NotImplementedError:
        declared = None
    if declared is not None:
        declared = declared if isinstance(declared, (list, tuple)) and declared and \
            isinstance(declared[0], (list, tuple)) else [declared]
        assert [tuple(s) for s in declared] == shapes, \
            f"compute_output_shape says {declared}, call gives {shapes}"

    # 3. the layer works symbolically in a functional model (fixed shapes, graph mode) and
    #    gives outputs of the same shapes; then one training step when it has weights
    symbolic = _map(lambda a: keras.Input(batch_shape=a.shape, dtype=str(a.dtype)), inputs)
    out = _flatten(layer(symbolic))
    graph = keras.Model(symbolic, out)
    graph_out = [keras.ops.convert_to_numpy(o) for o in _flatten(graph(inputs))]
    assert [tuple(o.shape) for o in graph_out] == shapes, "functional model changes shapes"
    if train and layer.trainable_weights:
        float_out = [o for o in out if "float" in str(o.dtype)]
        model = keras.Model(symbolic, float_out)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=["mse"] * len(float_out))
        before = [np.array(w) for w in layer.get_weights()]
        targets = [np.ones(_shape(o) if o.shape[0] is not None else o.shape, "float32")
                   for o in float_out]
        loss = model.train_on_batch(inputs, targets)
        assert np.all(np.isfinite(loss)), f"training step gave a non-finite loss {loss}"
        after = layer.get_weights()
        assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True)), \
            "one training step left every weight unchanged"
    return outputs
