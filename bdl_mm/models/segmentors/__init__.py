# Copyright (c) bdl_mm contributors. Owned by the module authors: import each registered class here.
from .bdl_encoder_decoder import BDLEncoderDecoder
from .bdl_segmentor import BDLSegmentor

__all__ = ['BDLEncoderDecoder', 'BDLSegmentor']
