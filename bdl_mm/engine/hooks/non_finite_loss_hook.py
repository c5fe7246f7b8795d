"""Stops a training stage at the first NaN/inf loss, before it reaches the weights, or skips the batch."""
import os.path as osp
from collections import Counter
from typing import Optional

import torch
from mmengine.dist import all_reduce, is_distributed, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import find_latest_checkpoint
from mmseg.registry import HOOKS

ACTIONS = ('stop', 'skip')
SKIPS_FILE = 'non_finite_skips.json'


class NonFiniteLossError(FloatingPointError):
    """A NaN or inf loss; the message (one line) names the stage, the iteration, the loss term and the checkpoint to
    resume from."""


class _SkipBatch(Exception):
    """Raised inside ``train_step`` to abandon the batch (``action='skip'``)."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Check every loss before its backward pass; stop the stage or skip the batch on a NaN/inf.

    Two checks run inside ``train_step``, before any gradient of the iteration is computed from the bad value:

    - every loss term given to the model's ``parse_losses`` (the keys containing ``loss``, as mmengine sums them):
      the message names the term (``decode.loss_ce``, ``loss_gan_g`` ...);
    - every loss given to an optimiser wrapper's ``backward`` (terms backpropagated without ``parse_losses``, such
      as D_M's): the message names the wrapper (``optim_wrapper.discriminator``).

    ``action='stop'`` raises :class:`NonFiniteLossError` naming the stage, the iteration (1-based) and the term.
    The weights never see the bad loss, and the checkpoints on disk are those of earlier iterations: ``--resume``
    continues from the last one. ``action='skip'`` abandons the rest of the iteration instead (gradients zeroed;
    updates already applied earlier in the same iteration, e.g. M's step before D_M's, stay), logs it, and counts
    the skips per term: in the log, in the runtime info ``bdl/non_finite_skips`` (kept in checkpoints, so a
    resumed stage goes on counting) and in ``<work_dir>/non_finite_skips.json``. With ``max_skips`` the stage
    stops once more batches than that were skipped. Under torch.distributed the ranks agree on every verdict
    (one all-reduce of a flag per check), so they skip or stop together.

    :class:`BidirectionalLoop` adds this hook to every training stage (``train_cfg.non_finite_loss``).

    Args:
        action (str): ``'stop'`` (default) or ``'skip'``.
        stage (str, optional): the stage's name in the messages (default: the work dir's name).
        max_skips (int, optional): stop after this many skipped batches. Default: no limit.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'stop', stage: Optional[str] = None, max_skips: Optional[int] = None):
        if action not in ACTIONS:
            raise ValueError(f'NonFiniteLossHook: action must be one of {ACTIONS}, got {action!r}')
        self.action = action
        self.stage = stage
        self.max_skips = max_skips
        self.skips = Counter()
        self._iter = 0
        self._runner = None
        self._patched = []

    # ------------------------------------------------------------------------------------------------ events
    def before_train(self, runner) -> None:
        self._runner = runner
        self.stage = self.stage or osp.basename(osp.normpath(runner.work_dir))
        self.skips = Counter(runner.message_hub.get_info('bdl/non_finite_skips') or {})  # resumed
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._patch(model, 'parse_losses', self._checked_parse_losses(model.parse_losses))
        self._patch(runner.model, 'train_step', self._skipping_train_step(runner.model.train_step))
        wrappers = runner.optim_wrapper
        items = wrappers.items() if hasattr(wrappers, 'optim_wrappers') else [(None, wrappers)]
        for key, wrapper in items:
            self._patch(wrapper, 'backward', self._checked_backward(wrapper.backward, key))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._iter = runner.iter + 1

    def after_train(self, runner) -> None:
        for obj, name in self._patched:  # the class methods again
            obj.__dict__.pop(name, None)
        self._patched = []
        if self.skips:
            runner.logger.warning(f'stage {self.stage}: {sum(self.skips.values())} batch(es) skipped for non-finite '
                                  f'losses ({self._counts()})')

    # ----------------------------------------------------------------------------------------------- helpers
    def _patch(self, obj, name, func):
        obj.__dict__[name] = func  # an instance attribute shadows the method (nn.Module: not a parameter)
        self._patched.append((obj, name))

    def _counts(self) -> str:
        return ', '.join(f'{term} x{n}' for term, n in sorted(self.skips.items()))

    @staticmethod
    def _agreed_bad(bad: bool, device) -> bool:
        """Whether any rank saw a non-finite value (every rank calls this at the same points)."""
        if not is_distributed():
            return bad
        flag = torch.tensor([1.0 if bad else 0.0], device=device)
        all_reduce(flag, op='sum')
        return bool(flag.item() > 0)

    def _checked_parse_losses(self, parse_losses):
        def checked(losses):
            terms = [(k, v) for k, v in losses.items() if 'loss' in k]
            if not terms:  # the same keys on every rank: no rank enters the collective
                return parse_losses(losses)
            values = [(v if isinstance(v, torch.Tensor) else sum(x.mean() for x in v)).detach().float().mean()
                      for _, v in terms]
            stacked = torch.stack([v.to(values[0].device) for v in values])
            finite = torch.isfinite(stacked)
            bad_term = None
            if not bool(finite.all()):
                i = int((~finite).nonzero()[0])
                bad_term = (terms[i][0], float(stacked[i]))
            if self._agreed_bad(bad_term is not None, stacked.device):
                self._non_finite(*(bad_term or ('a loss term on another rank', float('nan'))))
            return parse_losses(losses)
        return checked

    def _checked_backward(self, backward, key):
        name = 'optim_wrapper' + (f'.{key}' if key else '')

        def checked(loss, **kwargs):
            bad = not bool(torch.isfinite(loss.detach()).all())
            if self._agreed_bad(bad, loss.device):
                value = float(loss.detach().float().mean()) if bad else float('nan')
                self._non_finite(f'the loss given to {name}' + ('' if bad else ' (on another rank)'), value)
            return backward(loss, **kwargs)
        return checked

    def _skipping_train_step(self, train_step):
        def step(data, optim_wrapper):
            try:
                return train_step(data, optim_wrapper=optim_wrapper)
            except _SkipBatch:
                optim_wrapper.zero_grad()
                return dict()
        return step

    def _non_finite(self, term: str, value: float):
        runner = self._runner
        if self.action == 'skip' and (self.max_skips is None or sum(self.skips.values()) < self.max_skips):
            self.skips[term] += 1
            runner.message_hub.update_info('bdl/non_finite_skips', dict(self.skips))
            runner.logger.warning(f'stage {self.stage}: non-finite loss at iteration {self._iter}: {term} = {value}; '
                                  f'batch skipped ({sum(self.skips.values())} so far: {self._counts()})')
            if is_main_process():
                from bdl_mm.utils.atomic_io import atomic_write_json
                atomic_write_json(osp.join(runner.work_dir, SKIPS_FILE),
                                  dict(stage=self.stage, skipped=sum(self.skips.values()), per_term=dict(self.skips),
                                       last_iteration=self._iter))
            raise _SkipBatch()
        last = find_latest_checkpoint(runner.work_dir)
        where = (f'the last good checkpoint is {last}: --resume continues from it' if last else
                 'no checkpoint was saved yet: --resume restarts the stage')
        limit = (f' after {sum(self.skips.values())} skipped batches (max_skips={self.max_skips})'
                 if self.action == 'skip' else '')
        raise NonFiniteLossError(
            f'stage {self.stage}: non-finite loss at iteration {self._iter}: {term} = {value}{limit}; training '
            f'stopped before the weights were updated; {where} (train_cfg.non_finite_loss=\'skip\' skips such '
            'batches instead)')
