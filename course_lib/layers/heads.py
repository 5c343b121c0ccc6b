"""The box head and the mask head of Mask R-CNN (FPN variants).

Taught in notebooks/08_heads_and_losses.

- :class:`BoxHead`: RoIAlign features ``(B, R, 7, 7, C)`` -> flatten -> two fully connected
  layers of 1024 (ReLU) -> class logits ``(B, R, K)`` (softmax over K classes, 0 background)
  and per-class deltas ``(B, R, K, 4)`` (one box refinement per class; the loss reads only the
  gt class's, inference the detected class's).
- :class:`MaskHead`: RoIAlign features ``(B, P, 14, 14, C)`` -> four 3×3 convolutions of 256
  (ReLU; optional GroupNorm) -> a 2×2 stride-2 transposed convolution (ReLU) to 28×28 ->
  a 1×1 convolution with one output per class: ``(B, P, 28, 28, K)`` logits. Each class has
  its own sigmoid mask (the paper's decoupling: classes do not compete for pixels, Table 2b);
  the loss reads only the gt class channel.

Both fold the RoI axis into the batch axis for the convolutions and unfold it after, and
return float32 (also under a mixed precision policy).
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="course_lib")
class BoxHead(keras.layers.Layer):
    """Two-FC box head: ``features (B, R, h, w, C) -> (class_logits (B, R, K), deltas (B, R, K, 4))``.

    Args:
        num_classes: ``K`` including background.
        fc_dim: width of the two hidden layers (1024 in FPN).

    Taught in notebooks/08_heads_and_losses.
    """

    def __init__(self, num_classes: int, fc_dim: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.fc_dim = int(fc_dim)
        self.fc1 = layers.Dense(self.fc_dim, activation="relu", name="box_fc1")
        self.fc2 = layers.Dense(self.fc_dim, activation="relu", name="box_fc2")
        self.cls = layers.Dense(self.num_classes, name="box_class_logits",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))
        self.box = layers.Dense(4 * self.num_classes, name="box_deltas",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))

    def build(self, input_shape):
        flat = int(input_shape[-3] * input_shape[-2] * input_shape[-1])
        self.fc1.build((None, flat))
        self.fc2.build((None, self.fc_dim))
        self.cls.build((None, self.fc_dim))
        self.box.build((None, self.fc_dim))

    def call(self, features):
        r = features.shape[1]
        flat = int(features.shape[2] * features.shape[3] * features.shape[4])
        x = ops.reshape(features, (-1, r, flat))
        x = self.fc2(self.fc1(x))
        logits = ops.cast(self.cls(x), "float32")
        deltas = ops.reshape(ops.cast(self.box(x), "float32"), (-1, r, self.num_classes, 4))
        return logits, deltas

    def compute_output_shape(self, input_shape):
        b, r = input_shape[0], input_shape[1]
        return (b, r, self.num_classes), (b, r, self.num_classes, 4)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "fc_dim": self.fc_dim}


@keras.saving.register_keras_serializable(package="course_lib")
class MaskHead(keras.layers.Layer):
    """FCN mask head: ``features (B, P, 14, 14, C) -> logits (B, P, 28, 28, K)``.

    Args:
        num_classes: ``K`` including background (channel 0 is never trained).
        channels: width of the four 3×3 convolutions and of the transposed conv (256).
        num_convs: number of 3×3 convolutions (4).
        norm: ``"none"`` or ``"group"`` (GroupNorm after each 3×3 conv, for training from
            scratch with tiny batches).
        groups: GroupNorm groups (32, fewer when ``channels`` is small).

    Taught in notebooks/08_heads_and_losses.
    """

    def __init__(self, num_classes: int, channels: int = 256, num_convs: int = 4,
                 norm: str = "none", *, groups: int = 32, **kwargs):
        super().__init__(**kwargs)
        if norm not in ("none", "group"):
            raise ValueError(f"MaskHead norm must be 'none' or 'group', got {norm!r}.")
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.num_convs = int(num_convs)
        self.norm = norm
        self.groups = int(min(groups, channels))
        self.convs = [layers.Conv2D(self.channels, 3, padding="same", name=f"mask_conv{i + 1}",
                                    activation=None if norm == "group" else "relu")
                      for i in range(self.num_convs)]
        self.norms = [layers.GroupNormalization(self.groups, name=f"mask_gn{i + 1}")
                      for i in range(self.num_convs)] if norm == "group" else []
        self.up = layers.Conv2DTranspose(self.channels, 2, strides=2, activation="relu",
                                         name="mask_deconv")
        self.out = layers.Conv2D(self.num_classes, 1, name="mask_logits")

    def build(self, input_shape):
        h, w, c = input_shape[-3:]
        shape = (None, h, w, c)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = (None, h, w, self.channels)
            if self.norms:
                self.norms[i].build(shape)
        self.up.build(shape)
        self.out.build((None, 2 * h, 2 * w, self.channels))

    def call(self, features):
        p, h, w, c = features.shape[1], features.shape[2], features.shape[3], features.shape[4]
        x = ops.reshape(features, (-1, h, w, c))
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.norms:
                x = ops.relu(self.norms[i](x))
        x = self.out(self.up(x))
        return ops.reshape(ops.cast(x, "float32"), (-1, p, 2 * h, 2 * w, self.num_classes))

    def compute_output_shape(self, input_shape):
        b, p, h, w = input_shape[:4]
        return (b, p, 2 * h, 2 * w, self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "channels": self.channels, "num_convs": self.num_convs, "norm": self.norm,
                "groups": self.groups}
