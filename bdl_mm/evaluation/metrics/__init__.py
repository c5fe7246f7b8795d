# Copyright (c) bdl_mm contributors. Owned by the module authors: import each registered class here.
from .uda_iou_metric import (
                             DEFAULT_CLASS_SUBSETS,
                             MIOU13_CLASSES,
                             MIOU16_CLASSES,
                             UDAIoUMetric,
                             confusion_matrix,
                             ious_from_confusion,
                             summarize_ious,
)

__all__ = [
    'UDAIoUMetric', 'confusion_matrix', 'ious_from_confusion', 'summarize_ious', 'MIOU16_CLASSES', 'MIOU13_CLASSES',
    'DEFAULT_CLASS_SUBSETS'
]
