# Copyright (c) bdl_mm contributors.
from .data_file_error_hook import DataFileErrorHook
from .image_pool_checkpoint_hook import ImagePoolCheckpointHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .pseudo_label_hook import PseudoLabelHook
from .random_state_checkpoint_hook import RandomStateCheckpointHook
from .stage_metrics_hook import StageMetricsHook
from .stage_progress_hook import StageProgressHook

__all__ = ['DataFileErrorHook', 'ImagePoolCheckpointHook', 'NonFiniteLossError', 'NonFiniteLossHook', 'PseudoLabelHook',
           'RandomStateCheckpointHook', 'StageMetricsHook', 'StageProgressHook']
