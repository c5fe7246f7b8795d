"""A translation baseline's copy of the source, B(S), with B fitted on the target images, in two switches of the
project (:func:`~bdl_mm.engine.stages.translation.baseline_copy` writes it):

- ledger row 20, ``train_cfg.stages.translation.prealign`` (screened for the robust recipe and not chosen; None in
  every config): a translation baseline's settings, e.g. ``dict(type='Reinhard')``, applied to the source before F,
  so that F is trained on, and translates, the baseline's copy of S (its translation stage writes it);
- ledger row 21, ``train_cfg.ssl_baseline_source`` (None in every release config): the SSL stages train on S'(k)
  and B(S), each drawn with probability 1/2, as row 17 draws S'(k) and S (the run's first SSL stage writes it).
"""
import copy
import os.path as osp
from typing import Optional

from mmengine.config import ConfigDict

from ..datasets.uda_dataset import copy_counts


def prealign_settings(settings: Optional[dict], key: str) -> Optional[dict]:
    """A translation stage's settings -> its ``prealign`` (a copy), or None. Only where F is trained; a bad value
    raises ValueError naming ``key``."""
    pre = (settings or {}).get('prealign')
    if pre is None:
        return None
    pre = checked_baseline_settings(pre, key, 'dict(type=..., <settings>)')
    if settings.get('type') is not None:
        raise ValueError(f'{key}: F is not trained here (the translation is the baseline {settings["type"]!r}); '
                         'prealign goes with F only')
    return pre


def checked_baseline_settings(value, key: str, expected: str) -> dict:
    """A translation baseline's settings (rows 20, 21) as a plain dict copy; a value that is not a dict with a
    registered baseline type raises ValueError naming ``key`` and what was ``expected``."""
    from ..models.translators.translation_baseline import baseline_class, baseline_types
    if not isinstance(value, dict) or baseline_class(value.get('type')) is None:
        raise ValueError(f'{key}: expected {expected} with a translation baseline type '
                         f'({", ".join(baseline_types())}), got {value!r}')
    return copy.deepcopy(value.to_dict() if isinstance(value, ConfigDict) else dict(value))


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


def ssl_second_copy(value, untranslated: bool, share, all_stages: bool = False) -> dict:
    """``train_cfg.ssl_baseline_source`` (row 21), ``train_cfg.ssl_second_source_share`` and
    ``train_cfg.second_source_all_stages`` (row 22), checked, as ``build_plan`` settings: the baseline's settings as
    a plain dict, or None, the share as a float, the last as a bool. A bad value raises ValueError naming the key.
    ``untranslated``: ``train_cfg.ssl_untranslated_source`` (row 17), the other second copy: not both; the share
    and ``second_source_all_stages`` need one of them."""
    copy_counts(share, 'train_cfg.ssl_second_source_share')
    if not isinstance(all_stages, bool):
        raise ValueError(f'train_cfg.second_source_all_stages must be True or False, got {all_stages!r}')
    for key, needs in (('ssl_second_source_share', share != 0.5), ('second_source_all_stages', all_stages)):
        if needs and not (value or untranslated):
            raise ValueError(f'train_cfg.{key} needs ssl_baseline_source or ssl_untranslated_source')
    if value is not None:
        value = checked_baseline_settings(value, 'train_cfg.ssl_baseline_source', 'None or dict(type=..., <settings>)')
        if untranslated:
            raise ValueError('train_cfg.ssl_baseline_source and train_cfg.ssl_untranslated_source each set the SSL '
                             "stages' second copy of the source: set one")
    return dict(ssl_baseline_source=value, ssl_second_source_share=float(share), second_source_all_stages=all_stages)


def ssl_baseline_folder(work_dir: str) -> str:
    """Where row 21's B(S) is written, once per run (every track's SSL stages read it)."""
    return osp.join(work_dir, 'ssl_baseline_source')


def ssl_baseline_size(source) -> Optional[tuple]:
    """(W, H) at which row 21 writes B(S), or None (the source's own size).

    M's source pipeline resizes every image it loads to one scale (``Resize(scale, keep_ratio=False,
    backend='pillow', interpolation='bicubic')`` right after the loading transforms, as in every config). B(S) is
    written at that scale, resized by the same call (``mmcv.imresize``) after the baseline: the pipeline then loads
    it unchanged (PIL returns an image of the asked size as it is), so M sees the same pixels as from a copy at the
    source's size, on less disk (GTA5: 1280x720 against 1914x1052). Any other pipeline: None."""
    steps = [t for t in source.get('pipeline') or [] if not str(t.get('type', '')).split('.')[-1].startswith('Load')]
    first = steps[0] if steps else {}
    scale = first.get('scale')
    if (str(first.get('type', '')).split('.')[-1] != 'Resize' or first.get('keep_ratio', False)
            or first.get('backend') != 'pillow' or first.get('interpolation') != 'bicubic'
            or first.get('scale_factor') is not None or not isinstance(scale, (tuple, list)) or len(scale) != 2):
        return None
    return int(scale[0]), int(scale[1])


def second_source(plan, source, work_dir: str) -> dict:
    """The second copy of the source in the plan's SSL stages, as ``UDADataset`` arguments (none without one):
    ``untranslated_source``, S itself (row 17, ``plan.ssl_untranslated_source``) or the same set read from B(S)'s
    folder (row 21, ``plan.ssl_baseline_source``; same names, the labels stay S's), and ``untranslated_share``, how
    often it is drawn, where ``plan.ssl_second_source_share`` is not the default 1/2."""
    if not (plan.ssl_untranslated_source or plan.ssl_baseline_source):
        return {}
    second = copy.deepcopy(source)
    if plan.ssl_baseline_source:
        second.data_prefix = dict(source.get('data_prefix', {}), img_path=ssl_baseline_folder(work_dir))
    share = plan.ssl_second_source_share
    return dict(untranslated_source=second, **({} if share == 0.5 else dict(untranslated_share=share)))
