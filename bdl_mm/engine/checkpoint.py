"""Checkpoints of the stages: M's weights out of a stage (``state_dict`` + ``meta``, written atomically), and the
checkpoint an interrupted stage resumes from (the newest one that can be read)."""
import glob
import os.path as osp
import re
import zipfile
from typing import Optional, Tuple

from mmengine.runner import find_latest_checkpoint
from mmengine.runner.checkpoint import get_state_dict, weights_to_cpu

from ..utils.atomic_io import atomic_torch_save


def save_model_checkpoint(model, path: str, submodule: Optional[str] = None, meta: Optional[dict] = None):
    """Save a model's weights as an mmengine checkpoint (``state_dict`` + ``meta``), atomically.

    DDP wrappers are stripped at every depth (``MMSeparateDistributedDataParallel`` wraps each submodule, and
    ``Runner.save_checkpoint`` would keep their ``module.`` in the keys), so a checkpoint written by a
    distributed run loads into a plain model. ``submodule='segmentor'`` saves M alone out of a BDLSegmentor
    (a plain segmentor is saved as it is).
    """
    model = getattr(model, 'module', model)
    if submodule is not None:
        model = getattr(model, submodule, model)
    state = weights_to_cpu(get_state_dict(model))
    atomic_torch_save(dict(state_dict=state, meta=dict(meta or {}, source='bdl_mm')), path)


def export_segmentor_checkpoint(model, path: str):
    """Save M alone (the ``segmentor`` of a BDLSegmentor, or a plain segmentor) as an mmengine checkpoint."""
    save_model_checkpoint(model, path, submodule='segmentor')


def readable_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole torch checkpoint (a zip archive whose members all pass their CRC): a file cut
    by a kill, a full disk or a bad copy is not. Reads the file once; loads nothing."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def _step(path: str) -> int:
    match = re.fullmatch(r'(?:iter|epoch)_(\d+)\.pth', osp.basename(path))
    return int(match.group(1)) if match else -1


def checkpoint_to_resume(stage_dir: str, logger=None) -> Tuple[Optional[str], bool]:
    """The checkpoint an interrupted stage resumes from: ``(path, is_latest)``.

    ``last_checkpoint`` names the newest; if it cannot be read, each unreadable file is reported in one line and
    the newest readable ``iter_*.pth``/``epoch_*.pth`` of the stage is taken instead (``is_latest`` False). None
    when the stage has no readable checkpoint (it starts again; said in one line when it had unreadable ones)."""
    pointer = osp.join(stage_dir, 'last_checkpoint')
    if not osp.isfile(pointer):  # (mmengine's find_latest_checkpoint prints a line when there is none)
        return None, False
    latest = find_latest_checkpoint(stage_dir)
    others = sorted((p for p in glob.glob(osp.join(stage_dir, '*.pth')) if _step(p) >= 0 and p != latest),
                    key=_step, reverse=True)
    candidates = ([latest] if latest else []) + others
    for path in candidates:
        if readable_checkpoint(path):
            return path, path == latest
        if logger is not None:
            logger.warning(f'[BDL] checkpoint {path} is unreadable (cut by a kill, a full disk or a bad copy): '
                           'skipped')
    if candidates and logger is not None:
        logger.warning(f'[BDL] {stage_dir}: no readable checkpoint; the stage starts again')
    return None, False
