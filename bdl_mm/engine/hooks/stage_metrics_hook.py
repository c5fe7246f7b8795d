"""Keeps the metrics of the last validation in the message hub, for the stage that runs the training."""
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class StageMetricsHook(Hook):
    """Record the last validation metrics as the runtime info ``'bdl/last_val_metrics'``.

    mmengine's ``IterBasedTrainLoop`` always validates after its last iteration; :class:`BidirectionalLoop`
    reads that result instead of running the evaluation a second time.
    """
    priority = 'VERY_LOW'

    def after_val_epoch(self, runner, metrics=None) -> None:
        if metrics is not None:
            runner.message_hub.update_info('bdl/last_val_metrics', dict(metrics), resumed=False)
