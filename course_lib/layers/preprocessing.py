"""Image preprocessing as a layer inside the model, so a learner never feeds the wrong range.

Taught in notebooks/09_mask_rcnn.

Keras' ImageNet ResNet weights (``keras.applications.resnet``) expect "caffe" preprocessing:
RGB -> BGR, then the ImageNet channel means subtracted, no scaling. The model takes images as
the data pipeline gives them (float 0..255 RGB) and applies this first.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

#: ImageNet means in BGR order (``keras.applications.imagenet_utils``, caffe mode).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="course_lib")
class CaffePreprocessing(keras.layers.Layer):
    """``(B, H, W, 3)`` RGB 0..255 -> BGR minus the ImageNet means (float32).

    Equals ``keras.applications.resnet.preprocess_input`` on the same images.

    Taught in notebooks/09_mask_rcnn.
    """

    def call(self, images):
        images = ops.cast(images, "float32")
        mean = ops.convert_to_tensor(np.asarray(CAFFE_MEAN_BGR, np.float32))
        return ops.cast(ops.flip(images, axis=-1) - mean, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
