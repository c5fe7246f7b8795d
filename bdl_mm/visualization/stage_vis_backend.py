# Copyright (c) bdl_mm contributors.
"""One visualisation run for all the stages of Algorithm 1: a vis backend whose tags carry the stage's name."""
import copy
import hashlib
import os.path as osp
from typing import Optional

from mmengine.visualization import BaseVisBackend
from mmseg.registry import VISBACKENDS


def run_id(work_dir: str) -> str:
    """A stable id of the run in ``work_dir`` (W&B run id): every stage, and a resumed run, logs to it."""
    path = osp.abspath(work_dir)
    return f'{osp.basename(osp.normpath(path))}-{hashlib.sha1(path.encode()).hexdigest()[:8]}'


def stage_vis_backends(vis_backends, stage: str, work_dir: str) -> list:
    """A ``vis_backends`` list for one stage (or, ``stage='run'``, for the outer runner) of the BDL run in
    ``work_dir``: ``LocalVisBackend`` stays (per stage folder), every other backend is wrapped in
    :class:`StageVisBackend` writing to ``<work_dir>/vis_data`` (an already wrapped one gets this stage's tag)."""
    out = []
    for backend in vis_backends or []:
        kind = str(backend.get('type', '')).split('.')[-1] if isinstance(backend, dict) else None
        if kind in (None, 'LocalVisBackend'):
            out.append(backend)
        elif kind == 'StageVisBackend':
            out.append(dict(backend, stage=stage))
        else:
            out.append(dict(type='StageVisBackend', backend=dict(backend), stage=stage,
                            save_dir=osp.join(osp.abspath(work_dir), 'vis_data'), run_name=run_id(work_dir)))
    return out


@VISBACKENDS.register_module()
class StageVisBackend(BaseVisBackend):
    """Wrap an mmengine vis backend (``TensorboardVisBackend``, ``WandbVisBackend`` ...) so that every stage's
    runner of one BDL run writes to the same place, its tags prefixed with the stage: ``k1/m0/loss``,
    ``k1/m0/mIoU``, ``k1/translation/loss_gan_g_target``.

    :class:`~bdl_mm.engine.loops.BidirectionalLoop` wraps every backend of a stage's ``visualizer.vis_backends``
    except ``LocalVisBackend`` (which keeps writing ``<stage>/<timestamp>/vis_data/scalars.json``, read by
    ``tools/status.py``). The wrapped backend's ``save_dir`` is ``save_dir`` (the loop: ``<work_dir>/vis_data``):
    TensorBoard writes one events file per stage there, which TensorBoard shows as one run. A W&B backend gets
    ``init_kwargs`` ``id``/``name`` = :func:`run_id` / the work dir's name and ``resume='allow'`` (unless set),
    so each stage's ``wandb.init`` continues the same W&B run.

    Args:
        save_dir (str): folder of the wrapped backend (shared by all the stages).
        backend (dict): the wrapped backend's config.
        stage (str): the tag prefix.
        run_name (str, optional): W&B run id default (``run_id(work_dir)``).
    """

    def __init__(self, save_dir: str, backend: dict, stage: str, run_name: Optional[str] = None):
        super().__init__(save_dir)
        self.stage = stage.strip('/')
        backend = copy.deepcopy(dict(backend))
        backend['save_dir'] = save_dir
        if str(backend.get('type', '')).split('.')[-1] == 'WandbVisBackend' and run_name:
            init_kwargs = dict(backend.get('init_kwargs') or {})
            init_kwargs.setdefault('id', run_name)
            init_kwargs.setdefault('name', run_name.rsplit('-', 1)[0])
            init_kwargs.setdefault('resume', 'allow')
            backend['init_kwargs'] = init_kwargs
        self.backend = VISBACKENDS.build(backend)

    def _tag(self, name: str) -> str:
        return f'{self.stage}/{name}'

    @property
    def experiment(self):
        return self.backend.experiment

    def _init_env(self):
        pass  # the wrapped backend sets itself up on first use

    def add_config(self, config, **kwargs) -> None:
        pass  # one run, many stage configs: each stage's config is in its folder (<stage>/<timestamp>/*.py)

    def add_image(self, name: str, image, step: int = 0, **kwargs) -> None:
        self.backend.add_image(self._tag(name), image, step, **kwargs)

    def add_scalar(self, name: str, value, step: int = 0, **kwargs) -> None:
        self.backend.add_scalar(self._tag(name), value, step, **kwargs)

    def add_scalars(self, scalar_dict: dict, step: int = 0, file_path: Optional[str] = None, **kwargs) -> None:
        self.backend.add_scalars({self._tag(k): v for k, v in scalar_dict.items()}, step, file_path, **kwargs)

    def close(self) -> None:
        self.backend.close()
