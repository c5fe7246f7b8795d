"""``mmengine.runner.Runner`` whose checkpoints cannot be torn.

mmengine's ``Runner.save_checkpoint`` writes ``iter_<n>.pth`` in place, and ``CheckpointHook`` then points
``last_checkpoint`` at it: a kill, a full disk or a crash during the write leaves a half file that ``--resume``
trusts. Here the file is written under a hidden temporary name in the same folder and renamed when whole, so the
name ``last_checkpoint`` is given only ever holds a whole checkpoint. (mmengine has no atomic save; written by hand.)
"""
import errno
import os
import os.path as osp

from mmengine.dist import master_only
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from ...utils.atomic_io import DiskFullError


@RUNNERS.register_module()
class StageRunner(Runner):

    @master_only  # as mmengine's: the other ranks write nothing
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs):
        if '://' in str(out_dir):  # a remote backend (petrel, http ...): left to mmengine
            return super().save_checkpoint(out_dir, filename, *args, **kwargs)
        tmp = f'.{filename}.{os.getpid()}.part'
        try:
            super().save_checkpoint(out_dir, tmp, *args, **kwargs)
            os.replace(osp.join(out_dir, tmp), osp.join(out_dir, filename))
        except BaseException as e:
            if osp.exists(osp.join(out_dir, tmp)):
                os.remove(osp.join(out_dir, tmp))
            if isinstance(e, OSError) and e.errno == errno.ENOSPC and not isinstance(e, DiskFullError):
                raise DiskFullError(osp.join(out_dir, filename)) from None
            raise
