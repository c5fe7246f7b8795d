# Copyright (c) bdl_mm contributors.
from .pseudo_label_hook import PseudoLabelHook
from .stage_metrics_hook import StageMetricsHook

__all__ = ['PseudoLabelHook', 'StageMetricsHook']
