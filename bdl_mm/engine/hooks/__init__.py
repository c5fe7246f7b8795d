# Copyright (c) bdl_mm contributors. Owned by the module authors: import each registered class here.
from .pseudo_label_hook import PseudoLabelHook

__all__ = ['PseudoLabelHook']
