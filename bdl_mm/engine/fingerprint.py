"""Never mix two runs: the settings an Algorithm-1 run started with are recorded in its work dir and compared on
every later start (``--resume`` included).

The fingerprint is the part of the BDL config that decides what the stages compute, flattened to dotted keys
(``train_cfg.stages.adaptation.train_cfg.max_iters``, ``train_dataloader.dataset.target.data_root`` ...): the
top-level keys :data:`FINGERPRINT_KEYS` (every stage's settings in ``train_cfg``, the model, optimisers,
schedules, data roots and pipelines, evaluation, seeds, initial weights), plus the same keys of F's derived config
under ``translation.`` (read from its own file, which may change on disk). Left out: logging, visualisation,
checkpoint-hook settings, the launcher and environment, the test set, the config file's helper variables, and the
loop's run-time switches :data:`LOOP_RUNTIME_KEYS`, so that a run stopped by a non-finite loss can be resumed
with ``non_finite_loss='skip'``.

:func:`check_config_unchanged` raises :class:`ConfigChangedError` listing the changed keys; ``force=True``
(``tools/train.py --force-resume``) continues anyway, and the new fingerprint is recorded together with the list
of forced changes (``<work_dir>/bdl_config.json``, written atomically).
"""
import json
import os.path as osp
import time
from typing import Dict, List, Optional

from ..structures.plan import TRANSLATION, Stage
from ..utils.atomic_io import atomic_write_json

FINGERPRINT_FILE = 'bdl_config.json'
# top-level keys that decide what the stages compute (Runner.from_cfg's, and those bdl_mm reads itself)
FINGERPRINT_KEYS = ('model', 'data_preprocessor', 'train_dataloader', 'val_dataloader', 'val_evaluator', 'val_cfg',
                    'train_cfg', 'optim_wrapper', 'param_scheduler', 'custom_hooks', 'randomness', 'load_from',
                    'pseudo_label_dataset', 'global_batch_size')
# BidirectionalLoop arguments that are run-time switches, not settings of the run
LOOP_RUNTIME_KEYS = ('check_data', 'force_resume', 'non_finite_loss', 'sample_sheets', 'verbose_console')
MAX_LISTED = 8


class RunMixError(RuntimeError):
    """The work dir holds another run (or the same run under another config); the message is one line."""


class ConfigChangedError(RunMixError):
    """The config differs from the one the run in the work dir started with (one line listing the keys)."""


def flatten(obj, prefix: str = '') -> Dict[str, str]:
    """Dotted keys (``[i]`` for list items) -> JSON of the leaf value."""
    out = {}
    if isinstance(obj, dict) and obj:
        for key in obj:
            out.update(flatten(obj[key], f'{prefix}.{key}' if prefix else str(key)))
    elif isinstance(obj, (list, tuple)) and obj:
        for i, value in enumerate(obj):
            out.update(flatten(value, f'{prefix}[{i}]'))
    else:
        out[prefix] = json.dumps(obj, sort_keys=True, default=repr)
    return out


def _plain(cfg) -> dict:
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def outer_fingerprint(cfg) -> Dict[str, str]:
    """The fingerprint's keys read from the BDL config itself: all but F's ``translation.`` keys, which need the
    stage config builder to derive F's config."""
    out = {}
    plain = _plain(cfg)
    if plain.get('data_preprocessor') is None:
        # the preprocessor BDLSegmentor uses: M's own (the BDL bases set no top-level one; runs started before
        # they stopped repeating M's there recorded the same values)
        segmentor = (plain.get('model') or {}).get('segmentor')
        if isinstance(segmentor, dict) and segmentor.get('data_preprocessor') is not None:
            plain['data_preprocessor'] = segmentor['data_preprocessor']
    for key, value in plain.items():
        if key not in FINGERPRINT_KEYS:
            continue
        if key == 'train_cfg' and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in LOOP_RUNTIME_KEYS}
        out.update(flatten(value, key))
    return out


def config_fingerprint(cfg, plan, configs) -> Dict[str, str]:
    """The fingerprint of an Algorithm-1 run (see the module docstring): the BDL config ``cfg``, and F's config as
    ``configs`` (:class:`~bdl_mm.engine.stage_configs.StageConfigBuilder`) derives it when ``plan`` trains F."""
    out = outer_fingerprint(cfg)
    if any(s.kind == TRANSLATION for s in plan):
        f_cfg = _plain(configs.translation_cfg(Stage('fingerprint', TRANSLATION), None))
        segmentor = (f_cfg.get('model') or {}).get('segmentor')
        if isinstance(segmentor, dict):
            segmentor.pop('config', None)  # the BDL config's M, already in the fingerprint
        for key, value in f_cfg.items():
            if key in FINGERPRINT_KEYS:
                out.update(flatten(value, f'translation.{key}'))
    return out


def _short(value: Optional[str], width: int = 40) -> str:
    if value is None:
        return '-'
    return value if len(value) <= width else value[:width - 3] + '...'


def changed_keys(old: Dict[str, str], new: Dict[str, str]) -> List[str]:
    """``'key (old -> new)'`` for every key added, removed or changed, sorted."""
    return [f'{k} ({_short(old.get(k))} -> {_short(new.get(k))})' for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def load_fingerprint(work_dir: str) -> Optional[dict]:
    path = osp.join(work_dir, FINGERPRINT_FILE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_config_unchanged(work_dir: str, fingerprint: Dict[str, str], force: bool = False) -> Optional[List[str]]:
    """Compare with the fingerprint recorded in ``work_dir``. Returns None if none is recorded, else the changed
    keys (empty: unchanged). Raises :class:`ConfigChangedError` on a change unless ``force``."""
    record = load_fingerprint(work_dir)
    if record is None:
        return None
    changes = changed_keys(record.get('config', {}), fingerprint)
    if changes and not force:
        listed = '; '.join(changes[:MAX_LISTED]) + (f'; and {len(changes) - MAX_LISTED} more'
                                                     if len(changes) > MAX_LISTED else '')
        raise ConfigChangedError(
            f'the config changed since the run in {work_dir} started ({len(changes)} key(s): {listed}); use another '
            '--work-dir, or pass --force-resume (train_cfg.force_resume=True) to continue with the new config')
    return changes


def record_fingerprint(work_dir: str, fingerprint: Dict[str, str], forced: Optional[List[str]] = None) -> str:
    """Write ``<work_dir>/bdl_config.json`` atomically; ``forced``: changes accepted with ``force``, appended to the
    record's history."""
    old = load_fingerprint(work_dir) or {}
    history = list(old.get('forced_changes', []))
    if forced:
        history.append(dict(time=time.strftime('%Y-%m-%d %H:%M:%S'), changes=forced))
    record = dict(started=old.get('started', time.strftime('%Y-%m-%d %H:%M:%S')), forced_changes=history,
                  config=fingerprint)
    path = osp.join(work_dir, FINGERPRINT_FILE)
    atomic_write_json(path, record)
    return path
