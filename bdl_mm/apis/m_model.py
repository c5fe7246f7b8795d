# Copyright (c) bdl_mm contributors.
"""M (the segmentation model) of any bdl_mm config, alone, for the analysis tools (``tools/analysis_tools``):
built from a BDL config (``model.segmentor`` of a ``BDLSegmentor``) or a plain segmentor config, with the weights of
a BDL checkpoint (``segmentor.*`` keys: ``final_model.pth``) or of M alone (``segmentor.pth``), and a random batch
of the size M runs at."""
import copy
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

__all__ = ['m_model_cfg', 'build_m', 'm_input_shape', 'random_batch']


def m_model_cfg(cfg: Config):
    """M's model config: ``model.segmentor`` of a ``BDLSegmentor`` config, else ``model``."""
    model = cfg.model
    if str(model.get('type', '')).split('.')[-1] == 'BDLSegmentor':
        return copy.deepcopy(model.segmentor)
    return copy.deepcopy(model)


def build_m(cfg: Union[str, Config], checkpoint: Optional[str] = None,
            device: Union[str, torch.device] = 'cpu') -> nn.Module:
    """M of a config in eval mode on ``device``; ``checkpoint``: a BDL checkpoint (``segmentor.*``, the
    discriminator's keys are left out), M's own weights, or either with DDP's ``module.`` (loaded strictly)."""
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(m_model_cfg(cfg))
    if checkpoint is not None:
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt)
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
        if any(k.startswith('segmentor.') for k in state):
            state = {k[len('segmentor.'):]: v for k, v in state.items() if k.startswith('segmentor.')}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f'checkpoint {checkpoint} does not fit the config\'s M: missing {missing[:4]}, '
                             f'unexpected {unexpected[:4]}')
    return model.to(device).eval()


def m_input_shape(cfg: Config) -> Tuple[int, int]:
    """(H, W) M runs at in evaluation: the ``Resize`` scale of the test pipeline (``(w, h)`` in the config)."""
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    for step in (loader.get('dataset') or {}).get('pipeline') or []:
        if str(step.get('type', '')).split('.')[-1] == 'Resize' and step.get('scale'):
            scale = step['scale']
            return (int(scale), int(scale)) if isinstance(scale, int) else (int(scale[1]), int(scale[0]))
    raise ValueError('no Resize scale in the config\'s test pipeline: give the input size (--shape H W)')


def random_batch(shape: Tuple[int, int], batch_size: int = 1, seed: int = 0) -> dict:
    """A batch as M's data preprocessor takes it: random uint8 BGR images of ``shape`` (H, W) with their metainfo."""
    h, w = shape
    g = torch.Generator().manual_seed(seed)
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1.0, 1.0))
    return dict(inputs=[torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in range(batch_size)],
                data_samples=[SegDataSample(metainfo=dict(meta)) for _ in range(batch_size)])
