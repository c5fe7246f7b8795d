# Copyright (c) bdl_mm contributors.
from .perceptual_cycle_gan import PerceptualCycleGAN, build_frozen_segmentor

__all__ = ['PerceptualCycleGAN', 'build_frozen_segmentor']
