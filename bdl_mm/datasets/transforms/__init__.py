# Copyright (c) bdl_mm contributors. Owned by the module authors: import each registered class here.
from .load_pseudo_label import LoadPseudoLabel
from .pack_uda_inputs import PackUDAInputs
from .scale_width import ScaleWidth, scale_width

__all__ = ['LoadPseudoLabel', 'PackUDAInputs', 'ScaleWidth', 'scale_width']
