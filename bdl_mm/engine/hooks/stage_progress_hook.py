# Copyright (c) bdl_mm contributors.
"""One console line per log interval inside an Algorithm-1 stage: iteration, loss, lr and the stage's ETA."""
from typing import Optional

from mmengine.hooks import Hook, LoggerHook
from mmseg.registry import HOOKS

from ..run_status import format_duration
from ..runner.concise_runner import CONSOLE_ONLY


@HOOKS.register_module()
class StageProgressHook(Hook):
    """Log ``[BDL] <stage> iter i/N  loss ..  lr ..  eta h:mm:ss`` every ``interval`` iterations of the stage
    (the interval of the runner's ``LoggerHook``, counted over the whole stage, also for an epoch-based F) and at
    its last iteration, for the console only (``extra=CONSOLE_ONLY``: the log file has mmengine's full lines).

    :class:`~bdl_mm.engine.loops.BidirectionalLoop` adds it to every training stage unless
    ``train_cfg.verbose_console`` (``tools/train.py --verbose``) is set.

    Args:
        stage (str): the stage's name in the plan (``k1/m0``).
    """
    priority = 'BELOW_NORMAL'  # after IterTimerHook (the ETA) and after LoggerHook

    def __init__(self, stage: str):
        self.stage = stage

    @staticmethod
    def _logger_hook(runner) -> Optional[LoggerHook]:
        return next((h for h in runner.hooks if isinstance(h, LoggerHook)), None)

    def before_train(self, runner) -> None:
        if runner.iter > 0:
            runner.logger.info(f'[BDL] {self.stage} resumed at iter {runner.iter}/{runner.max_iters}',
                               extra=CONSOLE_ONLY)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        hook = self._logger_hook(runner)
        if hook is None or not (self.every_n_train_iters(runner, hook.interval) or runner.iter + 1 == runner.max_iters):
            return
        runner.logger.info(self.progress_line(runner), extra=CONSOLE_ONLY)

    def progress_line(self, runner) -> str:
        hub = runner.message_hub
        window = runner.log_processor.window_size
        scalars = hub.log_scalars

        def smoothed(key):
            buf = scalars[key]
            return buf.mean(window) if isinstance(window, int) else buf.mean()

        parts = [f'[BDL] {self.stage} iter {runner.iter + 1}/{runner.max_iters}']
        # the total loss, else the sum of M's logged terms (BDLSegmentor: src.* and tgt.*, not D_M's dis.*)
        loss_keys = ['train/loss'] if 'train/loss' in scalars else [
            k for k in scalars if k.startswith('train/') and not k.startswith('train/dis.') and
            'loss' in k.split('/', 1)[1].split('.')[-1]]
        if loss_keys:
            parts.append(f'loss {sum(float(smoothed(k)) for k in loss_keys):.4f}')
        lr_keys = [k for k in scalars if k.startswith('train/') and k.endswith('lr')]
        if lr_keys:  # the first optimiser's lr: M's (not D_M's), F's generators'
            key = 'train/lr' if 'train/lr' in lr_keys else lr_keys[0]
            parts.append(f'lr {float(scalars[key].current()):.3e}')
        parts.append(f'eta {format_duration(hub.get_info("eta"))}')
        return '  '.join(parts)
