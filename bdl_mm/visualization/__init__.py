# Copyright (c) bdl_mm contributors.
from .stage_vis_backend import StageVisBackend, run_id, stage_vis_backends

__all__ = ['StageVisBackend', 'run_id', 'stage_vis_backends']
