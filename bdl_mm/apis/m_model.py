# Copyright (c) bdl_mm contributors.
"""M (the segmentation model) of any bdl_mm config, alone, for the analysis tools (``tools/analysis_tools``):
built from a BDL config (``model.segmentor`` of a ``BDLSegmentor``) or a plain segmentor config, with the weights of
a BDL checkpoint (``segmentor.*`` keys: ``final_model.pth``) or of M alone (``segmentor.pth``), and a random batch
of the size M runs at. Also what the other parts read of M's config: its input normalisation (F's ``seg_input``) and
its classes, checked against the dataset's before training."""
import copy
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from ..utils.weights import checkpoint_weights

__all__ = ['m_model_cfg', 'm_input_format', 'check_m_classes', 'build_m', 'm_input_shape', 'random_batch']


def _is_bdl(model) -> bool:
    return str((model or {}).get('type', '')).split('.')[-1] == 'BDLSegmentor'


def m_model_cfg(cfg: Config):
    """M's model config: ``model.segmentor`` of a ``BDLSegmentor`` config, else ``model``; with the data
    preprocessor M runs with: its own, else the BDLSegmentor's ``model.data_preprocessor``, else the config's
    top-level ``data_preprocessor`` (as ``BDLSegmentor`` and MMEngine's Runner fill it in)."""
    model = cfg.model
    seg = copy.deepcopy(model.segmentor if _is_bdl(model) else model)
    if seg.get('data_preprocessor') is None:
        for outer in ((model.get('data_preprocessor') if _is_bdl(model) else None), cfg.get('data_preprocessor')):
            if outer is not None:
                seg['data_preprocessor'] = copy.deepcopy(outer)
                break
    return seg


def _channels(value, name: str) -> list:
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ValueError(f'{name} must have 1 or 3 values, got {value}')
    return values


def m_input_format(segmentor_cfg: dict) -> dict:
    """M's input as ``PerceptualCycleGAN`` reads it (``seg_input``): ``dict(mean, std, channel_order)`` in pixel
    units, from the segmentor config's ``SegDataPreProcessor`` (``mean``/``std``; ``bgr_to_rgb``/``rgb_to_bgr``: M
    is fed RGB, images being loaded BGR). No normalisation: mean 0, std 1."""
    dp = segmentor_cfg.get('data_preprocessor') or {}
    mean, std = dp.get('mean'), dp.get('std')
    key = 'model.segmentor.data_preprocessor'
    return dict(mean=[0.] * 3 if mean is None else _channels(mean, f'{key}.mean'),
                std=[1.] * 3 if std is None else _channels(std, f'{key}.std'),
                channel_order='RGB' if (dp.get('bgr_to_rgb') or dp.get('rgb_to_bgr')) else 'BGR')


def _dataset_classes(dataset_cfg) -> Optional[tuple]:
    """The classes a dataset config will have: its ``metainfo.classes``, else its class's ``METAINFO`` (UDA and
    wrapper datasets: those of their source / inner dataset); None when they cannot be told from the config."""
    from mmseg.registry import DATASETS
    if not isinstance(dataset_cfg, dict):
        return None
    classes = (dataset_cfg.get('metainfo') or {}).get('classes')
    if classes:
        return tuple(classes)
    for inner in ('source', 'dataset'):
        if isinstance(dataset_cfg.get(inner), dict):
            return _dataset_classes(dataset_cfg[inner])
    if dataset_cfg.get('datasets'):
        return _dataset_classes(dataset_cfg['datasets'][0])
    kind = dataset_cfg.get('type')
    cls = DATASETS.get(kind) if isinstance(kind, str) else kind if isinstance(kind, type) else None
    classes = (getattr(cls, 'METAINFO', None) or {}).get('classes')
    return tuple(classes) if classes else None


def check_m_classes(cfg: Config, prefix: str = '') -> None:
    """M's output classes (decode and auxiliary heads' ``num_classes``) must be the dataset's: the classes of
    ``val_dataloader.dataset``, else of ``train_dataloader.dataset`` (``metainfo.classes`` or the dataset class's).
    Raises a one-line ``ValueError`` naming the key; configs without heads or datasets are left alone."""
    model = cfg.get('model') or {}
    seg, key = (model.get('segmentor'), 'model.segmentor') if _is_bdl(model) else (model, 'model')
    if not isinstance(seg, dict):
        return
    for loader in ('val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        classes = _dataset_classes(dataset)
        if classes is None:
            continue
        for head_key in ('decode_head', 'auxiliary_head'):
            heads = seg.get(head_key)
            heads = heads if isinstance(heads, (list, tuple)) else [heads]
            for i, head in enumerate(heads):
                if not isinstance(head, dict) or head.get('num_classes') is None:
                    continue
                name = f'{prefix}{key}.{head_key}' + (f'[{i}]' if len(heads) > 1 else '') + '.num_classes'
                if int(head['num_classes']) != len(classes):
                    raise ValueError(f'{name} is {head["num_classes"]} but the dataset ({loader}.dataset, '
                                     f'{dataset.get("type")}) has {len(classes)} classes; set it (and '
                                     f'model.discriminator.in_channels) to {len(classes)}, or set the datasets\' '
                                     'metainfo.classes')
        return


def build_m(cfg: Union[str, Config], checkpoint: Optional[str] = None,
            device: Union[str, torch.device] = 'cpu') -> nn.Module:
    """M of a config in eval mode on ``device``; ``checkpoint``: a BDL checkpoint (``segmentor.*``, the
    discriminator's keys are left out), M's own weights, or either with DDP's ``module.`` (loaded strictly)."""
    if isinstance(cfg, str):
        cfg = Config.fromfile(cfg)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(m_model_cfg(cfg))
    if checkpoint is not None:
        state = checkpoint_weights(checkpoint)
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
