"""The pseudo-label stage: T labelled by M_(i-1)(k) for the SSL round i."""
import copy
import os.path as osp

import torch
from mmengine.dist import barrier
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS

from ...structures.plan import PSEUDO_LABEL, Stage
from .context import StageContext
from .diagnostics import pseudo_label_diagnostics


def run_pseudo_label(ctx: StageContext, stage: Stage, inputs: dict) -> dict:
    """Pseudo labels of T from ``inputs['label_with']`` (train_cfg.stages.pseudo_label), then their diagnostics."""
    result = pseudo_label(ctx, stage, inputs['label_with'])
    if ctx.diagnostics is not None:
        result['diagnostics'] = pseudo_label_diagnostics(ctx, stage, result)
    return result


def pseudo_label(ctx: StageContext, stage: Stage, m_result: dict) -> dict:
    from ...apis import generate_pseudo_labels
    from ...apis.m_model import m_model_cfg
    out_dir = ctx.stage_dir(stage)
    settings = ctx.configs.stage_cfgs[PSEUDO_LABEL].to_dict()
    settings.setdefault('progress', ctx.verbose_console)  # a progress bar on mmengine's full console only
    model = MODELS.build(m_model_cfg(ctx.cfg))  # M with the data preprocessor it trains with
    load_checkpoint(model, m_result['segmentor_checkpoint'], map_location='cpu', logger='silent')
    if torch.cuda.is_available():
        model = model.cuda()
    target = copy.deepcopy(ctx.cfg.train_dataloader.dataset.target)
    summary = generate_pseudo_labels(model, target, out_dir, **settings)
    barrier()
    return dict(pseudo_label_dir=osp.abspath(out_dir),
                kept_ratio=summary.get('kept_ratio'), summary=osp.join(out_dir, 'summary.json'))
