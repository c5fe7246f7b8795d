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


def round_settings(settings: dict, stage: Stage, N: int) -> dict:
    """The labelling settings of one SSL round. ``portion_step`` (a switch of this project, off in the release):
    the class-balanced ``portion`` grows by it each SSL round, as CBST's portions do (Zou et al. 2018), capped at
    1: round r keeps ``min(portion + (r - 1) * portion_step, 1)`` of each predicted class (``k{k}/ssl0`` of
    ``ssl_from_previous_round`` keeps the portion of the round before's last SSL round)."""
    settings = dict(settings)
    step = settings.pop('portion_step', None)
    if step is not None:
        if settings.get('portion') is None:
            raise ValueError('train_cfg.stages.pseudo_label.portion_step needs a starting portion')
        r = (stage.k - 1) * N + stage.i  # the SSL round over the whole track, from 1
        settings['portion'] = round(min(float(settings['portion']) + (r - 1) * float(step), 1.0), 6)
    return settings


def pseudo_label(ctx: StageContext, stage: Stage, m_result: dict) -> dict:
    from ...apis import generate_pseudo_labels
    from ...apis.m_model import m_model_cfg
    out_dir = ctx.stage_dir(stage)
    settings = round_settings(ctx.configs.stage_cfgs[PSEUDO_LABEL].to_dict(), stage, ctx.plan.N)
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
