"""Check functions that exercise notebooks call on a learner's code.

Taught in notebooks/00_start_here (how to do an exercise).

One module per chapter (``ch06_anchors_and_rpn`` holds the checks of notebook 06), all
re-exported here so a notebook writes ``from course_lib import exercises`` and then
``exercises.check_iou(my_iou)``. The machinery they share is in :mod:`.checking`.
"""

from course_lib.exercises.ch00_start_here import (  # noqa: F401
    BOX_AREA_CASES,
    check_box_area,
)
from course_lib.exercises.ch01_data_tour import (  # noqa: F401
    FLIP_BOXES_CASES,
    HAS_HOLE_CASES,
    KMEANS_CASES,
    MASKS_TO_BOXES_CASES,
    check_flip_boxes_left_right,
    check_has_hole,
    check_kmeans,
    check_masks_to_boxes,
)
from course_lib.exercises.ch02_metrics import (  # noqa: F401
    MASK_IOU_CASES,
    PRECISION_AT_CASES,
    RLE_CASES,
    check_mask_iou,
    check_precision_at,
    check_rle_encode,
)
from course_lib.exercises.ch03_convolution import (  # noqa: F401
    CONV2D_CASES,
    CONV_OUTPUT_SIZE_CASES,
    check_conv2d,
    check_conv_output_size,
)
from course_lib.exercises.ch04_resnet import (  # noqa: F401
    BOTTLENECK_CASES,
    check_bottleneck_block,
)
from course_lib.exercises.ch05_fpn import (  # noqa: F401
    TOP_DOWN_CASES,
    UPSAMPLE_ADD_CASES,
    check_top_down,
    check_upsample_add,
)
from course_lib.exercises.ch06_anchors_and_rpn import (  # noqa: F401
    ENCODE_CASES,
    IOU_CASES,
    LABEL_ANCHOR_CASES,
    LEVEL_ANCHOR_CASES,
    NMS_CASES,
    check_encode,
    check_iou,
    check_label_anchors,
    check_level_anchors,
    check_nms,
    label_rule_failed,
)
from course_lib.exercises.ch07_roi_pool_vs_roi_align import (  # noqa: F401
    BILINEAR_POINT_CASES,
    FPN_LEVEL_CASES,
    ROI_ALIGN_BOX_CASES,
    ROI_POOL_BOX_CASES,
    check_bilinear_point,
    check_fpn_level,
    check_roi_align_box,
    check_roi_pool_box,
)
from course_lib.exercises.ch08_heads_and_losses import (  # noqa: F401
    MASK_LOSS_CASES,
    MASK_TARGET_CASES,
    SAMPLE_ROIS_CASES,
    check_mask_loss,
    check_mask_target,
    check_sample_rois,
)
from course_lib.exercises.ch09_mask_rcnn import (  # noqa: F401
    PASTE_MASK_CASES,
    check_paste_mask,
)
from course_lib.exercises.ch10_unet import (  # noqa: F401
    CENTER_CROP_CASES,
    OVERLAP_TILE_CASES,
    UNET_OUTPUT_SIZE_CASES,
    WEIGHT_MAP_CASES,
    check_center_crop,
    check_overlap_tile,
    check_unet_output_size,
    check_weight_map,
)
from course_lib.exercises.ch11_train_nuclei import (  # noqa: F401
    DSB_PRECISION_CASES,
    MASKS_TO_LABELS_CASES,
    TILE_STARTS_CASES,
    check_dsb_precision,
    check_masks_to_labels,
    check_tile_starts,
)
from course_lib.exercises.ch12_train_voc import (  # noqa: F401
    WARMUP_STEP_LR_CASES,
    check_warmup_step_lr,
)
from course_lib.exercises.checking import (  # noqa: F401
    Case,
    ExerciseFailed,
    allclose,
    check_function,
    exact,
)
