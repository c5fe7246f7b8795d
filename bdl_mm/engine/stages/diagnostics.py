"""Per-stage diagnostics that need no target labels (``train_cfg.diagnostics``), in ``<stage>/diagnostics.json``:
after a translate stage, M(k-1) on S and S' and the colour statistics of S, S' and T; after a pseudo-label stage,
the kept ratio per class and, where the target train split has labels, the precision of the kept pixels."""
import copy
import json
import os.path as osp
from typing import Optional

import torch
from mmengine.config import ConfigDict
from mmengine.dist import barrier, is_main_process
from mmengine.runner import load_checkpoint
from mmseg.registry import DATASETS, MODELS

from ...structures.plan import Stage
from ...utils.atomic_io import atomic_write_json
from ..stage_configs import image_folder
from .context import StageContext


def translation_diagnostics(ctx: StageContext, stage: Stage, result: dict, m_prev: dict) -> Optional[dict]:
    """M(k-1) on S and S' against the source labels; colour statistics of S, S' and T; edges of S kept in S'
    (main process)."""
    from ...apis.translate import list_images
    from ...evaluation.stage_diagnostics import (
        edge_consistency,
        image_statistics,
        statistics_distance,
        subset,
        translation_consistency,
    )
    out = None
    if is_main_process():
        num = ctx.diagnostics['num_images']
        dataset = ctx.cfg.train_dataloader.dataset
        source = image_folder(dataset.source)
        target = image_folder(dataset.target)
        src_dir = osp.join(source['data_root'], source['img_dir'])
        tgt_dir = osp.join(target['data_root'], target['img_dir'])
        rels = subset(list_images(src_dir, source['img_suffix']), num)
        stats = dict(source=image_statistics([osp.join(src_dir, r) for r in rels]),
                     translated=image_statistics([osp.join(result['translated_dir'], r) for r in rels]),
                     target=image_statistics([osp.join(tgt_dir, r) for r in
                                              subset(list_images(tgt_dir, target['img_suffix']), num)]))
        segmentor = load_segmentor(ctx, m_prev['segmentor_checkpoint'])
        num_classes = segmentor.decode_head.num_classes
        out = dict(model=f'M({stage.k - 1})' if not stage.track else f'{stage.track}: M({stage.k - 1})',
                   **translation_consistency(segmentor, dataset.source, result['translated_dir'], num_classes, num),
                   colour_distance_source_to_target=statistics_distance(stats['source'], stats['target']),
                   colour_distance_translated_to_target=statistics_distance(stats['translated'], stats['target']),
                   edge_consistency=edge_consistency([osp.join(src_dir, r) for r in rels],
                                                     [osp.join(result['translated_dir'], r) for r in rels]),
                   statistics=stats)
        atomic_write_json(osp.join(ctx.stage_dir(stage), 'diagnostics.json'), out)
    barrier()
    return out


def pseudo_label_diagnostics(ctx: StageContext, stage: Stage, result: dict) -> Optional[dict]:
    """Kept ratio per class; the precision of the kept pixels where the target train split has labels."""
    from ...evaluation.stage_diagnostics import pseudo_label_diagnostics as diagnostics
    out = None
    if is_main_process():
        with open(result['summary']) as f:
            summary = json.load(f)
        classes = summary.get('classes') or []
        out = diagnostics(result['pseudo_label_dir'], summary, classes, labelled_target_dataset(ctx),
                          previous_summary(ctx, stage))
        atomic_write_json(osp.join(ctx.stage_dir(stage), 'diagnostics.json'), out)
    barrier()
    return out


def previous_summary(ctx: StageContext, stage: Stage) -> Optional[dict]:
    """The ``summary.json`` of the pseudo labels the labelling M_(i-1)(k) trained on (None for the first SSL round
    of a round: M_0(k) trained on none)."""
    teacher = ctx.plan.get(stage.label_with) if stage.label_with else None
    if teacher is None or not teacher.pseudo_labels:
        return None
    path = (ctx.state.get(teacher.pseudo_labels) or {}).get('summary')
    if not path or not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def labelled_target_dataset(ctx: StageContext) -> Optional[ConfigDict]:
    """``diagnostics.target_labels``: a dataset config; ``'auto'``: the oracle's labelled target train split
    when every label file exists (else None: no precision); None."""
    setting = ctx.diagnostics.get('target_labels')
    if setting is None or isinstance(setting, dict):
        return setting
    try:
        dataset_cfg = ctx.configs.oracle_dataset()
        cfg = copy.deepcopy(dataset_cfg)
        cfg.pipeline = []
        dataset = DATASETS.build(cfg)
        paths = [dataset.get_data_info(i).get('seg_map_path') for i in range(len(dataset))]
    except Exception:  # noqa: BLE001 - no labelled target split: the precision is left out
        return None
    return dataset_cfg if paths and all(p and osp.isfile(p) for p in paths) else None


def load_segmentor(ctx: StageContext, checkpoint: str):
    """M (the outer config's ``model.segmentor``) with the weights of ``checkpoint``, on the GPU if there is one."""
    model = MODELS.build(copy.deepcopy(ctx.cfg.model.segmentor))
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.cuda() if torch.cuda.is_available() else model
