"""Saves the random generators' states with every checkpoint and restores them on resume, so that a resumed stage
replays the uninterrupted one."""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop
from mmseg.registry import HOOKS

CHECKPOINT_KEY = 'bdl_random_state'


def get_random_state(dataloader=None) -> dict:
    """The states of Python's ``random``, NumPy's global generator, torch's CPU (and CUDA) generators and of the
    dataloader's own generator, if it has one; only types that ``torch.load(weights_only=True)`` reads."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(python=random.getstate(), torch=torch.get_rng_state(),
                 numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                            has_gauss=int(has_gauss), cached_gaussian=float(cached)))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    generator = getattr(dataloader, 'generator', None)
    if generator is not None:
        state['dataloader'] = generator.get_state()
    return state


def set_random_state(state: dict, dataloader=None) -> None:
    """Restore what :func:`get_random_state` returned."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    n = state['numpy']
    np.random.set_state((n['name'], n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    generator = getattr(dataloader, 'generator', None)
    if 'dataloader' in state and generator is not None:
        generator.set_state(state['dataloader'])


class _AlreadySkipped:
    """Stands in for a resumed ``IterBasedTrainLoop``'s dataloader iterator while the loop skips the batches of the
    iterations already done: the hook has advanced the real iterator itself, so these calls load nothing."""

    def __init__(self, iterator, skip: int):
        self.iterator, self.skip = iterator, skip

    def __iter__(self):
        return self

    def __next__(self):
        if self.skip > 0:
            self.skip -= 1
            return None
        return next(self.iterator)


@HOOKS.register_module()
class RandomStateCheckpointHook(Hook):
    """Make a resumed training stage continue like the uninterrupted one (docs/reliability.md, section 4).

    On resume mmengine re-seeds the random generators from the config's seed (the Runner seeds them when it is
    built) instead of restoring them, so a stage with random data augmentation, a random image pairing (F's
    unpaired target image) or a random image pool (F's D) goes on with other random numbers than the uninterrupted
    run. This hook:

    - saves, with every checkpoint (``before_save_checkpoint``), the states of Python's ``random``, NumPy's global
      generator, torch's CPU and CUDA generators and the train dataloader's generator
      (:func:`get_random_state`), under the checkpoint key ``bdl_random_state``;
    - on resume (a checkpoint with that key, and the train loop at the checkpoint's iteration), restores them as
      the first epoch starts (``before_train_epoch``, after the other hooks), where the uninterrupted run went on
      from that checkpoint: an ``EpochBasedTrainLoop`` resumes at an epoch's start (its checkpoints come at
      epoch ends) and draws its dataloader iterator afterwards;
    - for an ``IterBasedTrainLoop``, advances the dataloader past the iterations already done *before* restoring
      them (mmengine does it right after this hook: the batches it would skip are read here and its own skip reads
      nothing), so that the sampler, the UDA target stream and the dataloader workers are where the uninterrupted
      run had them and the generators as they were when the checkpoint was written. A stage resumed at its last
      iteration reads no batch at all;
    - keeps validation from consuming random numbers (states saved at ``before_val``, restored at ``after_val``):
      an uninterrupted run validates right after a checkpoint, the resumed one does not.

    What is exact (bitwise on the CPU): single-process stages whose random numbers come from these generators in
    the main process or from dataloader workers that start with each iterator (mmengine seeds each worker at its
    start). Not restored: the generators of persistent dataloader workers of an epoch-based loop (they restart
    from their seed). Under torch.distributed only rank 0 writes the checkpoint: every rank gets rank 0's states
    back, which are every rank's with the same seed on every rank (``randomness.diff_rank_seed=False``, mmengine's
    default: the ranks draw the same numbers); with ``diff_rank_seed=True`` only rank 0 does, the others are
    re-seeded as before.
    :class:`BidirectionalLoop` adds this hook to every training stage.
    """

    priority = 'LOWEST'

    def __init__(self):
        self._pending: Optional[tuple] = None
        self._val_state: Optional[dict] = None
        self._skipping: Optional[_AlreadySkipped] = None

    @staticmethod
    def _dataloader(runner):
        loop = getattr(runner, '_train_loop', None)
        return getattr(loop, 'dataloader', None) if loop is not None and not isinstance(loop, dict) else None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = get_random_state(self._dataloader(runner))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if get_rank() != 0 and (getattr(runner, '_randomness_cfg', None) or {}).get('diff_rank_seed'):
            state = None  # rank 0's states: not this rank's (seeded differently); re-seeded as before
        self._pending = None if state is None else (state, (checkpoint.get('meta') or {}).get('iter'))

    def before_train_epoch(self, runner) -> None:
        if self._pending is None:
            return
        state, saved_iter = self._pending
        self._pending = None
        loop = runner.train_loop
        if not loop.iter or loop.iter != saved_iter:  # a load_from, not a resume: nothing to replay
            return
        if isinstance(loop, IterBasedTrainLoop) and hasattr(loop, 'dataloader_iterator'):
            if loop.iter < loop.max_iters:
                for _ in range(loop.iter):
                    next(loop.dataloader_iterator)
            self._skipping = loop.dataloader_iterator = _AlreadySkipped(loop.dataloader_iterator, loop.iter)
        set_random_state(state, self._dataloader(runner))
        runner.logger.info(f'random generators restored as they were at iteration {loop.iter} (checkpoint)')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._skipping is not None:  # the loop's skip is over: hand it its own iterator back
            runner.train_loop.dataloader_iterator = self._skipping.iterator
            self._skipping = None

    def before_val(self, runner) -> None:
        self._val_state = get_random_state(self._dataloader(runner))

    def after_val(self, runner) -> None:
        if self._val_state is not None:
            set_random_state(self._val_state, self._dataloader(runner))
            self._val_state = None
