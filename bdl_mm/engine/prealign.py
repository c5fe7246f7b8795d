"""Ledger row 20, ``train_cfg.stages.translation.prealign`` (screened for the robust recipe and not chosen; None in
every config): a translation baseline's settings, e.g. ``dict(type='Reinhard')``, fitted on the target images and
applied to the source before F, so that F is trained on, and translates, the baseline's copy of S
(:func:`~bdl_mm.engine.stages.translation.prealign_source` writes it; the translate stage reads it)."""
import copy
import os.path as osp
from typing import Optional

from mmengine.config import ConfigDict


def prealign_settings(settings: Optional[dict], key: str) -> Optional[dict]:
    """A translation stage's settings -> its ``prealign`` (a copy), or None. Only where F is trained; a bad value
    raises ValueError naming ``key``."""
    pre = (settings or {}).get('prealign')
    if pre is None:
        return None
    from ..models.translators.translation_baseline import baseline_class, baseline_types
    if not isinstance(pre, dict) or baseline_class(pre.get('type')) is None:
        raise ValueError(f'{key}: expected dict(type=..., <settings>) with a translation baseline type '
                         f'({", ".join(baseline_types())}), got {pre!r}')
    if settings.get('type') is not None:
        raise ValueError(f'{key}: F is not trained here (the translation is the baseline {settings["type"]!r}); '
                         'prealign goes with F only')
    return copy.deepcopy(pre.to_dict() if isinstance(pre, ConfigDict) else dict(pre))


def prealigned_folder(stage_dir: str, source: dict) -> dict:
    """The folder F reads under row 20: ``<stage>/prealigned_source``, with the source's names and suffix."""
    return dict(data_root=osp.join(stage_dir, 'prealigned_source'), img_dir='', img_suffix=source['img_suffix'])


def read_prealigned_source(f_cfg, folder: dict, key: str):
    """Point F's config (``train_dataloader.dataset``, an ``UnpairedTranslationDataset``) at the prealigned folder."""
    dataset = f_cfg.train_dataloader.dataset
    if not str(dataset.get('type', '')).endswith('UnpairedTranslationDataset'):
        raise ValueError(f"{key}: F's dataset must be an UnpairedTranslationDataset (its source folder is replaced), "
                         f'got {dataset.get("type")!r}')
    dataset.source = folder
