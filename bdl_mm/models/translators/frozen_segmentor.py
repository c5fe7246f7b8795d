# Copyright (c) bdl_mm contributors.
"""The frozen segmentation model M that F's perceptual loss runs through (Eq. 2)."""
import copy
from typing import Optional, Union

import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import load_state_dict
from mmseg.registry import MODELS as SEG_MODELS

from ...utils.weights import checkpoint_weights
from ..decode_heads.deeplabv2_head import check_classifier_checkpoint


def build_frozen_segmentor(config: Union[str, dict], checkpoint: Optional[str] = None) -> nn.Module:
    """Build an MMSeg segmentor from a model config dict or an MMSeg config file, load its checkpoint, freeze it.

    A BDL training checkpoint (``segmentor.*``, ``discriminator.*``) loads either into the plain segmentor config
    (only ``segmentor.*`` is used) or into a wrapper config (``BDLSegmentor``), which is then unwrapped to its
    ``segmentor``. ``module.`` prefixes (DDP) are stripped. Loading is strict. The returned module is in eval
    mode with ``requires_grad=False`` on every parameter.
    """
    if isinstance(config, str):
        model_cfg = Config.fromfile(config).get('model', None)
        if model_cfg is None:
            raise ValueError(f'segmentor config file {config} has no `model` entry')
    else:
        model_cfg = config
    model_cfg = copy.deepcopy(dict(model_cfg))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(model_cfg)
    if checkpoint is not None:
        check_classifier_checkpoint(model_cfg, checkpoint, 'model.segmentor.checkpoint')
        state_dict = checkpoint_weights(checkpoint)
        if not set(state_dict) & set(model.state_dict()) and any(k.startswith('segmentor.') for k in state_dict):
            # A BDLSegmentor checkpoint (segmentor.*, discriminator.*) for a plain segmentor config.
            state_dict = {k[len('segmentor.'):]: v for k, v in state_dict.items() if k.startswith('segmentor.')}
        try:
            load_state_dict(model, state_dict, strict=True)
        except RuntimeError as e:
            msg = ' '.join(str(e).split())
            raise ValueError(f'segmentor checkpoint {checkpoint} does not fit the segmentor config '
                             f'({type(model).__name__}): {msg}') from None
    else:
        model.init_weights()
        print_log('PerceptualCycleGAN: the segmentor M has no checkpoint; the perceptual loss uses its initial '
                  'weights (set model.segmentor.checkpoint to M(k-1))', logger='current', level=30)
    inner = getattr(model, 'segmentor', None)
    if isinstance(inner, nn.Module) and hasattr(inner, 'decode_head'):
        # A wrapper such as BDLSegmentor: keep the normalisation of the outer model if the inner has none.
        if not getattr(inner.data_preprocessor, '_enable_normalize', False):
            inner.data_preprocessor = model.data_preprocessor
        model = inner
    model.eval()
    model.requires_grad_(False)
    return model
