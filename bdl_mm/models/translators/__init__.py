# Copyright (c) bdl_mm contributors.
from .colour_transfer import ReinhardColourTransfer
from .fda_translator import FDATranslator
from .frozen_segmentor import build_frozen_segmentor
from .perceptual_cycle_gan import PerceptualCycleGAN
from .translation_baseline import TranslationBaseline, baseline_from_record, baseline_types, build_baseline

__all__ = [
    'PerceptualCycleGAN', 'build_frozen_segmentor', 'TranslationBaseline', 'FDATranslator', 'ReinhardColourTransfer',
    'baseline_types', 'build_baseline', 'baseline_from_record'
]
