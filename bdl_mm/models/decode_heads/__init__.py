# Copyright (c) bdl_mm contributors. Owned by the module authors: import each registered class here.
from .deeplabv2_head import DeepLabV2Head
from .fcn8s_head import FCN8sHead

__all__ = ['DeepLabV2Head', 'FCN8sHead']
