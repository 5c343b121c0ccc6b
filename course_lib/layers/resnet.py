"""Residual networks: basic and bottleneck blocks, ResNet-50/101 with C2–C5 outputs.

Taught in notebooks/04_resnet.

The layer arrangement and the layer *names* follow ``keras.applications.ResNet50`` exactly
(ResNet v1 as released with Keras: the stride sits in the first 1×1 convolution of a
bottleneck, every convolution has a bias, BatchNorm epsilon 1.001e-5), so

- parameter counts match ``keras.applications.ResNet50/101(include_top=False)`` exactly
  (23,587,712 and 42,658,176), and
- ImageNet weights copy across layer by layer, by name (:func:`copy_weights`).

Outputs are the last feature map of each stage, named as in the Mask R-CNN / FPN papers:

====  ======  ================  ======
name  stage   layer             stride
====  ======  ================  ======
C2    conv2   conv2_blockN_out  4
C3    conv3   conv3_blockN_out  8
C4    conv4   conv4_blockN_out  16
C5    conv5   conv5_blockN_out  32
====  ======  ================  ======

Detection fine-tunes with tiny batches (1–2 images of 1024 px), where batch statistics are
noise, so BatchNorm is *frozen*: ``freeze_bn=True`` builds every BatchNormalization with
``trainable=False``, which in Keras 3 also makes it run in inference mode (moving mean and
variance) even when the model is called with ``training=True``.

Model code uses Keras layers only, so it builds on the TensorFlow, JAX and PyTorch backends.
The 3×3 convolutions are the course's :class:`course_lib.layers.conv2d.Conv2D`: Keras' layer,
same weights and outputs, which on an AVX2-only CPU convolves a lone image as its two halves
(oneDNN's one-image kernel there is about 3× slower per image).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import layers

from course_lib.layers.conv2d import Conv2D

#: Blocks per stage (conv2..conv5) for each bottleneck depth, from the ResNet paper, Table 1.
BOTTLENECK_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
#: Filters of the 3×3 convolution in each stage; a bottleneck block outputs 4× as many.
STAGE_FILTERS = (64, 128, 256, 512)
#: Stride of C2..C5 relative to the input.
STAGE_STRIDES = (4, 8, 16, 32)
BN_EPSILON = 1.001e-5  # Keras applications' value; must match for copied weights to agree
FEATURE_NAMES = ("C2", "C3", "C4", "C5")


def _bn(name: str, freeze_bn: bool) -> layers.BatchNormalization:
    return layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=name,
                                     trainable=not freeze_bn)


def bottleneck_block(x, filters: int, stride: int = 1, conv_shortcut: bool = True,
                     *, name: str = "block", freeze_bn: bool = False, kernel_size: int = 3):
    """Bottleneck residual block: 1×1 (reduce) → 3×3 → 1×1 (expand ×4), plus the shortcut.

    ``out = relu(shortcut(x) + BN(conv1×1(relu(BN(conv3×3(relu(BN(conv1×1(x)))))))))``.
    The shortcut is the identity, or a strided 1×1 convolution + BN (``conv_shortcut``)
    where the shape changes (first block of a stage).

    Args:
        x: ``(N, H, W, C)`` Keras tensor.
        filters: width of the 3×3 convolution; the block outputs ``4 * filters`` channels.
        stride: stride of the block (in the first 1×1 and in the shortcut, as Keras places it).
        conv_shortcut: project the shortcut (needed when channels or stride change).
        name: prefix of the layer names (``conv3_block1`` gives ``conv3_block1_1_conv`` …).
        freeze_bn: build BatchNorm layers with ``trainable=False`` (inference mode).
        kernel_size: of the middle convolution.

    Returns:
        ``(N, ceil(H / stride), ceil(W / stride), 4 * filters)`` Keras tensor.

    Taught in notebooks/04_resnet.
    """
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn", freeze_bn)(shortcut)
    else:
        if stride != 1:
            raise ValueError(f"{name}: an identity shortcut cannot have stride {stride}; "
                             "pass conv_shortcut=True.")
        shortcut = x
    y = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    y = _bn(f"{name}_1_bn", freeze_bn)(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = Conv2D(filters, kernel_size, padding="same", name=f"{name}_2_conv")(y)
    y = _bn(f"{name}_2_bn", freeze_bn)(y)
    y = layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(y)
    y = _bn(f"{name}_3_bn", freeze_bn)(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def basic_block(x, filters: int, stride: int = 1, conv_shortcut: bool | None = None,
                *, name: str = "block", freeze_bn: bool = False):
    """Basic residual block (ResNet-18/34): 3×3 → 3×3 plus the shortcut; ``filters`` out.

    The shortcut is projected (strided 1×1 conv + BN) when ``conv_shortcut`` is true; by
    default whenever the stride or the channel count changes.

    Args:
        x: ``(N, H, W, C)`` Keras tensor.
        filters: output channels.
        stride: stride of the first 3×3 convolution and of the shortcut.
        conv_shortcut: ``None`` decides from the shapes.
        name: layer-name prefix. freeze_bn: as in :func:`bottleneck_block`.

    Returns:
        ``(N, ceil(H / stride), ceil(W / stride), filters)`` Keras tensor.

    Taught in notebooks/04_resnet.
    """
    if conv_shortcut is None:
        conv_shortcut = stride != 1 or x.shape[-1] != filters
    if conv_shortcut:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn", freeze_bn)(shortcut)
    else:
        shortcut = x
    y = Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_1_conv")(x)
    y = _bn(f"{name}_1_bn", freeze_bn)(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(y)
    y = _bn(f"{name}_2_bn", freeze_bn)(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def stem(x, filters: int = 64, freeze_bn: bool = False):
    """7×7 stride-2 convolution, BN, ReLU and a 3×3 stride-2 max pool: stride 4 overall.

    Explicit zero padding (3, then 1) as in Keras applications, so the layers and their
    outputs match ``keras.applications.ResNet50``.

    Taught in notebooks/04_resnet.
    """
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = layers.Conv2D(filters, 7, strides=2, name="conv1_conv")(x)
    x = _bn("conv1_bn", freeze_bn)(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _check_input_shape(input_shape) -> tuple:
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    return input_shape


def resnet(depth: int = 50, input_shape=(None, None, 3), freeze_bn: bool = False,
           name: str | None = None) -> keras.Model:
    """ResNet-50/101/152 (v1, Keras applications arrangement) with outputs ``[C2, C3, C4, C5]``.

    Args:
        depth: 50, 101 or 152.
        input_shape: ``(H, W, 3)``; ``None`` sides accept any size (strides 4…32 need sides
            divisible by 32 for exact ``H/stride`` maps).
        freeze_bn: build every BatchNorm with ``trainable=False`` (inference mode); the
            convolutions stay trainable.
        name: model name (default ``resnet50`` etc.).

    Returns:
        A ``keras.Model`` mapping ``(N, H, W, 3)`` float images (preprocessed as
        ``keras.applications.resnet.preprocess_input`` when using ImageNet weights) to four
        maps at strides 4, 8, 16, 32 with 256, 512, 1024, 2048 channels.

    Taught in notebooks/04_resnet.
    """
    if depth not in BOTTLENECK_DEPTHS:
        raise ValueError(f"depth={depth!r} is not available; use one of "
                         f"{sorted(BOTTLENECK_DEPTHS)} (or light_resnet for a small CPU model).")
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="image")
    x = stem(inputs, 64, freeze_bn)
    features = []
    for stage, (blocks, filters) in enumerate(zip(BOTTLENECK_DEPTHS[depth], STAGE_FILTERS, strict=True)):
        prefix = f"conv{stage + 2}"
        for i in range(blocks):
            # conv2 keeps the stride-4 resolution of the stem; later stages halve it.
            stride = 2 if (i == 0 and stage > 0) else 1
            x = bottleneck_block(x, filters, stride=stride, conv_shortcut=(i == 0),
                                 name=f"{prefix}_block{i + 1}", freeze_bn=freeze_bn)
        features.append(x)
    return keras.Model(inputs, features, name=name or f"resnet{depth}")


def light_resnet(input_shape=(None, None, 3), filters=(16, 32, 64, 128), blocks=(1, 1, 1, 1),
                 freeze_bn: bool = False, *, name: str = "light_resnet") -> keras.Model:
    """A small ResNet with basic blocks for quick mode on a CPU; same strides as ResNet-50.

    Args:
        input_shape: ``(H, W, 3)``.
        filters: channels of C2..C5.
        blocks: basic blocks per stage.
        freeze_bn: as in :func:`resnet`.

    Returns:
        ``keras.Model`` with outputs ``[C2, C3, C4, C5]`` at strides 4, 8, 16, 32.

    Taught in notebooks/04_resnet (and used by the quick mode of every later chapter).
    """
    if len(filters) != 4 or len(blocks) != 4:
        raise ValueError("filters and blocks need one entry per stage C2..C5 (four each).")
    inputs = keras.Input(shape=_check_input_shape(input_shape), name="image")
    x = stem(inputs, filters[0], freeze_bn)
    features = []
    for stage, (n_blocks, f) in enumerate(zip(blocks, filters, strict=True)):
        for i in range(n_blocks):
            stride = 2 if (i == 0 and stage > 0) else 1
            x = basic_block(x, f, stride=stride, name=f"conv{stage + 2}_block{i + 1}",
                            freeze_bn=freeze_bn)
        features.append(x)
    return keras.Model(inputs, features, name=name)


def copy_weights(source: keras.Model, target: keras.Model) -> int:
    """Copy weights layer by layer, matching layers by name; returns how many layers were copied.

    Every target layer that has weights must find a source layer of the same name with
    weights of the same shapes, otherwise ``ValueError`` names the layer.

    Taught in notebooks/04_resnet.
    """
    by_name = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in target.layers:
        if not layer.weights:
            continue
        src = by_name.get(layer.name)
        if src is None:
            raise ValueError(f"copy_weights: layer {layer.name!r} of {target.name!r} has no "
                             f"namesake in {source.name!r}; build both with the same depth.")
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(w.shape) for w in src.weights]
        if want != got:
            raise ValueError(f"copy_weights: layer {layer.name!r} has weight shapes {want} but "
                             f"the source has {got}.")
        layer.set_weights(src.get_weights())
        copied += 1
    return copied


#: File names Keras gives the ImageNet weights in its cache (``~/.keras/models``).
IMAGENET_FILES = {
    50: ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
         "resnet50_weights_tf_dim_ordering_tf_kernels.h5"),
    101: ("resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "resnet101_weights_tf_dim_ordering_tf_kernels.h5"),
    152: ("resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
          "resnet152_weights_tf_dim_ordering_tf_kernels.h5"),
}
FALLBACK_MESSAGE = "ImageNet weights not found offline: using random initialisation"

#: MD5 of each file in :data:`IMAGENET_FILES`, as ``keras.applications`` checks it when it
#: downloads the file (``WEIGHTS_HASHES`` in Keras' ``applications/resnet.py``).
IMAGENET_MD5 = {
    "resnet50_weights_tf_dim_ordering_tf_kernels.h5": "2cb95161c43110f7111970584f804107",
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101_weights_tf_dim_ordering_tf_kernels.h5": "f1aeb4b969a6efcfb50fad2f0c20cfc5",
    "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5": "88cf7a10940856eca736dc7b7e228a21",
    "resnet152_weights_tf_dim_ordering_tf_kernels.h5": "100835be76be38e30d865e96f2aaae62",
    "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5": "ee4c566cf9a93f14d82f913c2dc6dd0c",
}

#: Where keras.applications downloads the ResNet weights from (file name appended).
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``.

    Taught in notebooks/04_resnet.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def find_imagenet_weights(depth: int = 50) -> Path | None:
    """Path of cached ImageNet weights for ResNet-``depth`` (no-top first), or ``None``.

    Taught in notebooks/04_resnet.
    """
    for filename in IMAGENET_FILES.get(depth, ()):
        path = keras_cache_dir() / filename
        if path.is_file():
            return path
    return None


def check_imagenet_file(depth: int = 50) -> dict:
    """Is a usable ImageNet weight file for ResNet-``depth`` in the Keras cache?

    For a machine without network: download the file elsewhere (``IMAGENET_URL`` + its name,
    or ``keras.applications.ResNet50(weights="imagenet", include_top=False)`` on a machine
    with network, which leaves it in ``~/.keras/models``), copy it into
    :func:`keras_cache_dir` under its name, then call this. It reads the file once and
    compares its MD5 with the one keras.applications checks.

    Returns:
        ``{"expected_path", "found", "path", "bytes", "md5", "expected_md5", "ok"}``:
        ``expected_path`` is where the no-top file should be; ``path`` the file found (no-top
        first, as :func:`find_imagenet_weights`), ``None`` when none; ``ok`` is ``True`` only
        when a file is found and its MD5 matches.

    Taught in notebooks/12_train_voc.
    """
    import hashlib

    if depth not in IMAGENET_FILES:
        raise ValueError(f"ImageNet weights exist for ResNet-50/101/152, not {depth}.")
    path = find_imagenet_weights(depth)
    out = {"expected_path": keras_cache_dir() / IMAGENET_FILES[depth][0], "found": path is not None,
           "path": path, "bytes": None, "md5": None, "expected_md5": None, "ok": False}
    if path is None:
        return out
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    out.update(bytes=path.stat().st_size, md5=digest.hexdigest(),
               expected_md5=IMAGENET_MD5[path.name])
    out["ok"] = out["md5"] == out["expected_md5"]
    return out


def _depth_of(model: keras.Model) -> int:
    blocks = sum(1 for layer in model.layers
                 if layer.name.startswith("conv4_block") and layer.name.endswith("_out"))
    for depth, stages in BOTTLENECK_DEPTHS.items():
        if stages[2] == blocks:
            return depth
    raise ValueError(f"{model.name!r} is not a ResNet-50/101/152 built by course_lib.layers."
                     "resnet.resnet; ImageNet weights exist only for those.")


def load_imagenet_weights(model: keras.Model, allow_download: bool = False,
                          verbose: bool = True) -> bool:
    """Copy ImageNet weights from ``keras.applications`` into a :func:`resnet` model.

    Offline by default: looks for the weight file Keras caches in ``~/.keras/models`` (or
    ``$KERAS_HOME/models``). When it is missing, prints
    ``"ImageNet weights not found offline: using random initialisation"`` and returns
    ``False`` (the model keeps its random weights). With ``allow_download=True`` Keras may
    download the file instead.

    Args:
        model: built by :func:`resnet` (depth 50, 101 or 152).
        allow_download: let Keras fetch the weights from the network when not cached.
        verbose: print what happened.

    Returns:
        ``True`` when the weights were copied.

    Taught in notebooks/04_resnet.
    """
    depth = _depth_of(model)
    path = find_imagenet_weights(depth)
    if path is None and not allow_download:
        if verbose:
            print(f"{FALLBACK_MESSAGE} (looked for {IMAGENET_FILES[depth][0]} in "
                  f"{keras_cache_dir()}).")
        return False
    builder = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101,
               152: keras.applications.ResNet152}[depth]
    include_top = path is not None and not path.name.endswith("_notop.h5")
    try:
        reference = builder(weights=str(path) if path else "imagenet", include_top=include_top)
    except Exception as err:  # corrupt file or failed download: keep going, say so
        if verbose:
            print(f"{FALLBACK_MESSAGE} ({type(err).__name__}: {err}).")
        return False
    copied = copy_weights(reference, model)
    if verbose:
        print(f"ImageNet weights loaded into {model.name} ({copied} layers) from "
              f"{path or 'the Keras download'}.")
    return True
