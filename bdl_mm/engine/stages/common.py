"""What every training stage shares: its own mmengine runner (concise console, stage-tagged visualisation, the
reliability hooks, resumed from its last checkpoint), and the record of an M stage (its checkpoints and sample
sheet)."""
import copy
import os
import os.path as osp

from mmengine.config import Config
from mmengine.dist import barrier, is_main_process
from mmengine.runner import Runner

from ...utils.data_workers import stop_workers
from ...visualization import stage_vis_backends
from ...visualization.sample_sheet import save_sample_sheet
from ..checkpoint import checkpoint_to_resume, export_segmentor_checkpoint, save_model_checkpoint
from ..runner import ConciseRunner, StageRunner, memo_config
from .context import StageContext


def build_child(ctx: StageContext, cfg: Config) -> Runner:
    """A stage's runner: a concise console unless ``verbose_console`` (then mmengine's), a visualizer of its
    own, and its vis backends other than ``LocalVisBackend`` (TensorBoard, W&B ...) wrapped in
    ``StageVisBackend``: all stages write to ``<work_dir>/vis_data``, tagged ``<stage>/<scalar>``."""
    stage_name = osp.relpath(cfg.work_dir, ctx.work_dir).replace(os.sep, '/')
    if cfg.get('visualizer') is not None:
        vis = copy.deepcopy(cfg.visualizer)
        # mmengine keys visualizers by name: a fixed name hands every stage the first runner's instance (and
        # its folder); without one, each runner names its own after its experiment name
        vis.pop('name', None)
        vis['vis_backends'] = stage_vis_backends(vis.get('vis_backends'), stage_name, ctx.work_dir)
        cfg.visualizer = vis
    cfg = memo_config(cfg)  # the config text of each checkpoint's meta, formatted once
    if ctx.verbose_console:
        return StageRunner.from_cfg(cfg)
    if cfg.get('train_cfg') is not None:
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='StageProgressHook', stage=stage_name)]
    return ConciseRunner.from_cfg(cfg)


def run_child(ctx: StageContext, cfg: Config) -> Runner:
    """Train a stage's config with its own runner, resumed from the stage's last checkpoint if it has one."""
    stage_dir = cfg.work_dir
    resume_from, is_latest = checkpoint_to_resume(stage_dir, ctx.logger)
    cfg.resume = resume_from is not None
    if cfg.resume:  # the interrupted stage resumes from its own newest readable checkpoint
        cfg.load_from = None if is_latest else resume_from  # None: mmengine's auto-resume finds the latest itself
    # at least two whole checkpoints at every moment of a stage, so that a torn newest one has one before it:
    # mmengine's CheckpointHook removes the oldest before it writes the next, hence three kept
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook is not None and 0 < hook.get('max_keep_ckpts', -1) < 3:
        hook['max_keep_ckpts'] = 3
    # a NaN/inf loss stops the stage (or skips the batch); a file that fails to load is named; a resumed stage
    # gets the random generators' states of its checkpoint back (docs/reliability.md, section 4)
    stage_name = osp.relpath(stage_dir, ctx.work_dir)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
        dict(type='NonFiniteLossHook', stage=stage_name, **ctx.non_finite_loss), dict(type='DataFileErrorHook'),
        dict(type='RandomStateCheckpointHook')]
    child = build_child(ctx, cfg)
    child.train()
    return child


def release_workers(child: Runner) -> int:
    """Stop the stage's data-loader workers now; return how many processes were stopped.

    With ``persistent_workers=True`` (the real configs) a DataLoader keeps its workers until it is freed, and
    mmengine's loops and their runner hold each other: the stage's runner is freed only by the garbage collector's
    next full pass, which may come stages later. Each worker is a fork of the training process and holds, copy on
    write, the memory the process had when it forked, even after the process frees it. Found by the dress
    rehearsal of ``configs/bdl_gta5_vgg16.py``: 12 workers were alive in stage 9, F(2), and the run was killed
    for memory on a 24 GiB machine. (mmengine has no call for this.)"""
    loaders = (getattr(getattr(child, name, None), 'dataloader', None) for name in ('_train_loop', '_val_loop',
                                                                                    '_test_loop'))
    return sum(stop_workers(loader) for loader in loaders if loader is not None)


def train_m(ctx: StageContext, stage, translated_dir, pseudo_label_dir, load_from) -> dict:
    """Train an M stage (from ``load_from``, on ``translated_dir`` and ``pseudo_label_dir`` where given)."""
    cfg = ctx.configs.m_stage_cfg(stage, translated_dir, pseudo_label_dir, load_from)
    child = run_child(ctx, cfg)
    # mmengine validates after the last iteration; StageMetricsHook kept the result
    metrics = child.message_hub.get_info('bdl/last_val_metrics') or {}
    if not metrics and child.val_loop is not None:
        metrics = child.val_loop.run()
    release_workers(child)
    return finish_m(ctx, child, cfg, metrics, translated_dir=translated_dir, pseudo_label_dir=pseudo_label_dir)


def finish_m(ctx: StageContext, child: Runner, cfg: Config, metrics: dict, **extra) -> dict:
    """Save the M stage's model (whole, and M alone for F and SSL), its sample sheet; the stage's record."""
    model = child.model.module if hasattr(child.model, 'module') else child.model
    ckpt = osp.join(cfg.work_dir, 'final_model.pth')
    segmentor_ckpt = osp.join(cfg.work_dir, 'segmentor.pth')
    if is_main_process():
        save_model_checkpoint(child.model, ckpt)
        export_segmentor_checkpoint(model, segmentor_ckpt)
        if ctx.sample_sheets and 'val_dataloader' in cfg:
            save_sample_sheet(model, cfg, osp.join(cfg.work_dir, 'samples.png'),
                              source_cfg=ctx.cfg.train_dataloader.dataset.source,
                              translated_dir=extra.get('translated_dir'),
                              pseudo_label_dir=extra.get('pseudo_label_dir'))
    barrier()
    return dict(checkpoint=ckpt, segmentor_checkpoint=segmentor_ckpt,
                metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, **extra)
