"""``mmengine.runner.Runner`` whose checkpoints cannot be torn.

mmengine's ``Runner.save_checkpoint`` writes ``iter_<n>.pth`` in place, and ``CheckpointHook`` then points
``last_checkpoint`` at it: a kill, a full disk or a crash during the write leaves a half file that ``--resume``
trusts. Here the file is written under a hidden temporary name in the same folder and renamed when whole, so the
name ``last_checkpoint`` is given only ever holds a whole checkpoint. (mmengine has no atomic save; written by hand.)

The outer runner of Algorithm 1 (a train loop with ``resumes_stages``) trains nothing itself: on ``--resume`` it only
loads ``load_from`` (the initial weights every M run starts from), and the loop resumes each stage from that stage's
own checkpoints. mmengine's ``load_or_resume`` would instead resume the outer runner from ``load_from``, an
initialisation without ``meta.epoch``, and end in ``KeyError: 'epoch'`` (found by tools/dress_rehearsal.py).
"""
import os.path as osp

from mmengine.dist import master_only
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from ...utils.atomic_io import atomic_write


@RUNNERS.register_module()
class StageRunner(Runner):

    @master_only  # as mmengine's: the other ranks write nothing
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if '://' in str(out_dir):  # a remote backend (petrel, http ...): left to mmengine
            return super().save_checkpoint(out_dir, filename, *args, **kwargs)
        # mmengine's save into the temporary file atomic_write names (same folder), then the rename; ENOSPC ends
        # in DiskFullError naming the checkpoint
        atomic_write(osp.join(out_dir, filename),
                     lambda tmp: super(StageRunner, self).save_checkpoint(out_dir, osp.basename(tmp), *args, **kwargs))

    def load_or_resume(self) -> None:
        if self._resume and getattr(self._train_loop, 'resumes_stages', False):
            if self._load_from is not None and not self._has_loaded:
                self.load_checkpoint(self._load_from)
                self._has_loaded = True
            return
        super().load_or_resume()
