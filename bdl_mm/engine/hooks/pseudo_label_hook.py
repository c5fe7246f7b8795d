# Copyright (c) bdl_mm contributors.
"""Hook that (re)generates the target pseudo labels (BDL SSL, Sec. 3.2) inside a training run."""
import copy
import os.path as osp
from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

from bdl_mm.apis.pseudo_label import generate_pseudo_labels, target_dataset_cfg, unwrap_segmentor
from bdl_mm.utils.data_workers import stop_workers


@HOOKS.register_module()
class PseudoLabelHook(Hook):
    """Write target pseudo labels with :func:`bdl_mm.apis.pseudo_label.generate_pseudo_labels` during training.

    Events (any combination):

    - ``before_train=True``: before the first iteration, label the target with the model as it is then (after
      ``load_from`` / resume), or, if ``checkpoint`` is given, with a copy of the model loading that checkpoint
      (the release practice: M_i trains from the initial weights while M_(i-1) supplies the labels).
    - ``iters=(n1, n2, ...)``: after training iteration ``n`` (1-based, ``runner.iter`` after the step), label
      the target with the current model.
    - ``after_train=True``: at the end of training, label the target with the final model (labels for the next
      round of Algorithm 1; the train set is not touched any more).

    Each event writes a folder ``<out_dir>/<tag>`` (tag ``before_train``, ``iter_<n>`` or ``after_train``;
    ``out_dir`` defaults to ``<work_dir>/pseudo_labels``), so the files a running dataloader reads are never
    rewritten underneath it. A folder already complete with the same model and settings is reused (resume), one
    made with another model is replaced. After ``before_train`` / ``iters`` events with
    ``update_train_dataset=True`` the train set's ``UDADataset`` is pointed to the new folder
    (``set_pseudo_label_dir(dir)`` if it has it, else its ``pseudo_label_dir`` attribute) and the train dataloader
    workers are restarted so that they see it. Under torch.distributed every rank must run the hook: the images
    are split over the ranks and the histograms all-reduced.

    Args:
        out_dir: root of the pseudo-label folders (default ``<work_dir>/pseudo_labels``).
        dataset: target dataset config; default: the config's ``pseudo_label_dataset``, else the ``target`` of the
            train ``UDADataset``, else the train set. Random transforms are dropped from its pipeline.
        mode, threshold: see :func:`generate_pseudo_labels` (``class_median`` with 0.9 = the release).
        before_train, iters, after_train: when to label (see above).
        checkpoint: weights to label with at ``before_train`` (default: the model being trained).
        batch_size, num_workers: inference loader settings.
        update_train_dataset: point the train ``UDADataset`` to the new labels.
        keep_cache: keep the per-image prediction caches.
    """

    priority = 'NORMAL'

    def __init__(self,
                 out_dir: Optional[str] = None,
                 dataset: Optional[dict] = None,
                 mode: str = 'class_median',
                 threshold: float = 0.9,
                 before_train: bool = False,
                 iters: Sequence[int] = (),
                 after_train: bool = False,
                 checkpoint: Optional[str] = None,
                 batch_size: int = 1,
                 num_workers: int = 0,
                 update_train_dataset: bool = True,
                 keep_cache: bool = False) -> None:
        from bdl_mm.apis.ssl_thresholds import MODES
        if mode not in MODES:
            raise ValueError(f'PseudoLabelHook: unknown mode {mode!r}; expected one of {MODES}')
        if not (before_train or iters or after_train):
            raise ValueError('PseudoLabelHook: set at least one of before_train, iters, after_train')
        if checkpoint is not None and not before_train:
            raise ValueError('PseudoLabelHook: checkpoint is only used at before_train; set before_train=True')
        self.out_dir = out_dir
        self.dataset = dataset
        self.mode = mode
        self.threshold = threshold
        self.at_before_train = before_train
        self.iters = sorted(set(int(i) for i in iters))
        self.at_after_train = after_train
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.update_train_dataset = update_train_dataset
        self.keep_cache = keep_cache
        self.last_summary = None
        self.last_dir = None

    # ------------------------------------------------------------------------------------------------ events
    def before_train(self, runner) -> None:
        if self.at_before_train:
            model = runner.model
            if self.checkpoint is not None:
                from mmengine.runner.checkpoint import load_checkpoint
                model = copy.deepcopy(unwrap_segmentor(runner.model))
                load_checkpoint(model, self.checkpoint, map_location='cpu', logger='current',
                                revise_keys=[(r'^segmentor\.', ''), (r'^module\.', '')])
            self._label(runner, model, 'before_train', update=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1  # runner.iter is the 0-based index of the iteration that just finished
        if done in self.iters:
            self._label(runner, runner.model, f'iter_{done}', update=True)

    def after_train(self, runner) -> None:
        if self.at_after_train:
            self._label(runner, runner.model, 'after_train', update=False)

    # ----------------------------------------------------------------------------------------------- helpers
    def _label(self, runner, model, tag: str, update: bool) -> None:
        root = self.out_dir or osp.join(runner.work_dir, 'pseudo_labels')
        out = osp.join(root, tag)
        dataset = self.dataset if self.dataset is not None else target_dataset_cfg(runner.cfg)
        dataloader = dict(batch_size=self.batch_size, num_workers=self.num_workers, dataset=dataset)
        print_log(f'PseudoLabelHook: labelling the target ({self.mode}, {self.threshold}) into {out}',
                  logger='current')
        self.last_summary = generate_pseudo_labels(
            model, dataloader, out, mode=self.mode, threshold=self.threshold, overwrite=True,
            keep_cache=self.keep_cache, checkpoint=self.checkpoint if tag == 'before_train' else f'<{tag}>',
            config=getattr(runner.cfg, 'filename', None))
        self.last_dir = out
        runner.message_hub.update_info('pseudo_label_dir', out)
        runner.message_hub.update_scalar('train/pseudo_label_kept_ratio', self.last_summary['kept_ratio'])
        if update and self.update_train_dataset:
            self._point_train_set(runner, out)

    @staticmethod
    def _point_train_set(runner, out: str) -> None:
        loop = runner.train_loop
        dataloader = loop.dataloader if hasattr(loop, 'dataloader') else runner.train_dataloader
        dataset = dataloader.dataset
        if hasattr(dataset, 'set_pseudo_label_dir'):
            dataset.set_pseudo_label_dir(out)
        elif hasattr(dataset, 'pseudo_label_dir'):
            dataset.pseudo_label_dir = out
        else:
            raise AttributeError(f'PseudoLabelHook: the train set {type(dataset).__name__} has no pseudo_label_dir; '
                                 'use a UDADataset or update_train_dataset=False')
        stop_workers(dataloader)  # workers hold a copy of the dataset: the next iterator forks fresh ones
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop holds a live iterator
            epoch = getattr(loop.dataloader_iterator, '_epoch', 0)
            loop.dataloader_iterator = type(loop.dataloader_iterator)(dataloader)
            loop.dataloader_iterator._epoch = epoch
