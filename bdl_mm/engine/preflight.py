"""Preflight scan: every data set Algorithm 1 will read is checked before the first stage trains.

On real data M(0) alone takes a day of GPU time; a corrupt target image or an empty split must not surface after it.
:class:`~bdl_mm.engine.loops.BidirectionalLoop` calls :func:`preflight` at the start of ``run()`` (before the
initial weights are saved and before any stage), with ``train_cfg.check_data`` (``tools/train.py --check-data``;
``--dry-run`` runs the scan alone):

- ``'header'`` (default): every image is opened and its header read (a PNG must also end with its ``IEND``
  chunk, which catches a truncated copy without decoding it); every label's header is read (single-channel 8 bit,
  the size of its image); the label ids are decoded and checked on a sample of :data:`LABEL_SAMPLE` labels per
  split;
- ``'full'``: every image is decoded as the pipelines decode it (OpenCV) and every label's ids are checked;
- ``'none'``: no scan.

Splits scanned: source train (images + trainId labels), target train (images), target val (images + labels), F's
training data (its source and target folders) and the folder the translate stage reads, when the plan translates;
on ``--resume``, the translated images and pseudo labels already written (every one the next stages will read
must exist, be readable and have the right size). Files shared by two splits are checked once.

A failure raises :class:`DataCheckError`: one line naming the split and the file or folder of the first problem
(splits in the order above), with the number of further problems; all are listed in the log and in
``<work_dir>/preflight.json``. Nothing has been trained at that point.
"""
import json
import os
import os.path as osp
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import numpy as np

from ..datasets.file_checks import check_label_ids, decode_image, decode_label, image_header
from ..datasets.label_maps import LabelFileError
from ..datasets.uda_dataset import pseudo_label_name
from ..structures.plan import ORACLE, PSEUDO_LABEL, TRANSLATE, TRANSLATION
from ..utils.atomic_io import atomic_write_json
from .runner import CONSOLE
from .stage_configs import image_folder

CHECK_MODES = ('header', 'full', 'none')
LABEL_SAMPLE = 32  # labels per split whose ids are decoded in 'header' mode (all of them in 'full' mode)
REPORT_FILE = 'preflight.json'


class DataCheckError(ValueError):
    """A data set that would fail Algorithm 1; the message is one line naming the file or folder. ``report``: the
    scan's report (every problem found), if the scan ran."""

    def __init__(self, message: str, report: Optional[dict] = None):
        super().__init__(message)
        self.report = report


class Split:
    """The files of one data set to check.

    Args:
        name: how the error messages call it (e.g. ``'target train (train_dataloader.dataset.target)'``).
        folder: its image folder (named when the split is empty).
        images: image paths.
        labels: label path per image (None: no labels).
        num_classes, reduce_zero_label: the valid label ids.
        pairs: ``{image path: reference image path}``: the image must have the reference's size, or its aspect
            ratio (translated images: the source image's size, or F's training width with ``scale_width``).
        label_sizes: allowed ``(width, height)`` of the labels when they are not the images' size (pseudo labels
            are at the size M ran at).
        extra: further files that must exist and be readable (soft pseudo-label weights).
        optional: missing images are skipped instead of failing (outputs of an interrupted stage).
        empty_hint: added to the message of an empty split.
        error: the split could not be listed (reported by :func:`scan`, in the order of the splits).
    """

    def __init__(self, name, folder, images, labels=None, num_classes=None, reduce_zero_label=False, pairs=None,
                 label_sizes=None, extra=(), optional=False, empty_hint='', error=None):
        self.name, self.folder = name, folder
        self.images, self.labels = list(images), None if labels is None else list(labels)
        self.num_classes, self.reduce_zero_label = num_classes, reduce_zero_label
        self.pairs = pairs or {}
        self.label_sizes = None if label_sizes is None else {tuple(s) for s in label_sizes}
        self.extra = list(extra)
        self.optional = optional
        self.empty_hint = empty_hint
        self.error = error

    def __repr__(self):
        return f'Split({self.name}, {len(self.images)} images)'


# ------------------------------------------------------------------------------------------------ the scan
def _one_line(text: str) -> str:
    return ' '.join(str(text).split())


def _check_file(job):
    """(path, (w, h) or None, error or None) for one file; ``job`` = (path, kind, ids, mode)."""
    path, kind, ids, mode = job
    try:
        if not osp.isfile(path):
            raise LabelFileError(f'{kind} {path} does not exist')
        if kind == 'label':
            w, h, img_mode = image_header(path)
            if img_mode not in ('L', 'P'):
                raise LabelFileError(f'label {path} is a {img_mode} image; expected a single-channel 8-bit trainId '
                                     'PNG (converted by tools/dataset_converters/)')
            if ids is not None:
                check_label_ids(path, decode_label(path), *ids)
        elif mode == 'full':
            w, h = decode_image(path)
        else:
            w, h, _ = image_header(path)
        return path, (w, h), None
    except LabelFileError as e:
        return path, None, _one_line(e)
    except Exception as e:  # noqa: BLE001 - any failure is reported with the file name
        return path, None, _one_line(f'cannot check {kind} {path} ({type(e).__name__}: {e})')


def _same_shape(size, ref) -> bool:
    """``size`` is ``ref``, or ``ref`` scaled to another width with the aspect ratio kept (the translate stage's
    ``scale_width``: ``int(width * H / W)`` rows)."""
    (w, h), (rw, rh) = size, ref
    return (w, h) == (rw, rh) or h in (int(w * rh / rw), round(w * rh / rw))


def scan(splits: List[Split], mode: str = 'header', num_threads: Optional[int] = None) -> dict:
    """Check ``splits``; raise :class:`DataCheckError` (one line) on the first problem found, with the number of
    further ones. Returns the report: files checked, seconds, rate (files/s) and per-split counts."""
    if mode not in CHECK_MODES:
        raise ValueError(f'check_data must be one of {CHECK_MODES}, got {mode!r}')
    start = time.time()
    errors: List[str] = []
    jobs: Dict[str, tuple] = {}  # path -> job (first split wins)
    owner: Dict[str, str] = {}
    for split in splits:
        if split.error is not None:
            errors.append(f'{split.name}: {split.error}')
            continue
        if not split.images:
            if not split.optional:
                errors.append(f'{split.name}: no images in {split.folder}{split.empty_hint}')
            continue
        if split.labels is not None and split.num_classes is not None:
            n = len(split.labels)
            sample = set(range(n)) if mode == 'full' else set(
                np.linspace(0, n - 1, min(n, LABEL_SAMPLE)).round().astype(int).tolist())
        else:
            sample = set()
        for i, img in enumerate(split.images):
            if split.optional and not osp.isfile(img):
                continue
            lab = split.labels[i] if split.labels is not None else None
            if img not in jobs and img != lab:
                jobs[img], owner[img] = (img, 'image', None, mode), split.name
            if lab is not None:
                ids = (split.num_classes, 255, split.reduce_zero_label) if i in sample else None
                if lab not in jobs or (ids is not None and jobs[lab][2] is None):
                    jobs[lab], owner[lab] = (lab, 'label', ids, mode), split.name
        for path in split.extra:
            if path not in jobs:
                jobs[path], owner[path] = (path, 'label', None, mode), split.name
    threads = num_threads or min(8, os.cpu_count() or 1)
    sizes: Dict[str, tuple] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for path, size, err in pool.map(_check_file, list(jobs.values()), chunksize=64):
            if err is not None:
                errors.append(f'{owner[path]}: {err}')
            else:
                sizes[path] = size
    counts = {}
    for split in splits:
        counts[split.name] = len(split.images)
        for i, img in enumerate(split.images):
            if img not in sizes:
                continue
            ref = split.pairs.get(img)
            if ref is not None and ref in sizes and not _same_shape(sizes[img], sizes[ref]):
                (w, h), (rw, rh) = sizes[img], sizes[ref]
                errors.append(f'{split.name}: image {img} is {w}x{h} but {ref} is {rw}x{rh} (a translated image has '
                              'its source image\'s size, or its aspect ratio at F\'s training width)')
            if split.labels is None:
                continue
            lab = split.labels[i]
            if lab not in sizes:
                continue
            (lw, lh), (w, h) = sizes[lab], sizes[img]
            if split.label_sizes is not None:
                if (lw, lh) not in split.label_sizes:
                    allowed = ', '.join(f'{a}x{b}' for a, b in sorted(split.label_sizes))
                    errors.append(f'{split.name}: label {lab} is {lw}x{lh}, expected {allowed}')
            elif (lw, lh) != (w, h):
                errors.append(f'{split.name}: label {lab} is {lw}x{lh} but image {img} is {w}x{h} (labels must have '
                              'their image\'s size; the converters handle GTA5\'s mismatches with --size-mismatch '
                              'resize|drop, see docs/data.md)')
        for path in split.extra:
            if path in sizes and split.label_sizes is not None and sizes[path] not in split.label_sizes:
                errors.append(f'{split.name}: file {path} is {sizes[path][0]}x{sizes[path][1]}, expected one of '
                              f'{sorted(split.label_sizes)}')
    seconds = time.time() - start
    report = dict(mode=mode, files=len(jobs), seconds=round(seconds, 3),
                  files_per_s=round(len(jobs) / seconds, 1) if seconds > 0 else None, threads=threads,
                  splits=counts, errors=errors)
    if errors:
        more = f' (and {len(errors) - 1} more problem(s))' if len(errors) > 1 else ''
        raise DataCheckError(f'preflight ({mode}): {errors[0]}{more}', report)
    return report


# --------------------------------------------------------------------------------------- the plan's data sets
def _build(dataset_cfg, scope: str):
    from mmengine.registry import DefaultScope
    if scope == 'mmagic':
        from mmagic.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    cfg = dict(dataset_cfg)
    cfg['pipeline'] = []
    if scope == 'mmseg':
        cfg.update(lazy_init=True, serialize_data=False)
    with DefaultScope.overwrite_default_scope(scope):
        dataset = DATASETS.build(cfg)
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    return dataset


def _img_folder(cfg) -> str:
    prefix = (cfg.get('data_prefix') or {}).get('img_path', '') or ''
    return prefix if osp.isabs(prefix) else osp.join(cfg.get('data_root', '') or '', prefix)


def seg_split(name: str, dataset_cfg, labels: bool) -> Split:
    """A split from an MMSeg dataset config (its data list: images, and labels if ``labels``)."""
    folder = _img_folder(dataset_cfg)
    hint = f' (img_suffix {dataset_cfg.get("img_suffix")!r})' if dataset_cfg.get('img_suffix') else ''
    if not osp.isdir(folder):
        return Split(name, folder, [], error=f'image folder {folder} does not exist')
    try:
        dataset = _build(dataset_cfg, 'mmseg')
    except Exception as e:  # noqa: BLE001 - reported in one line naming the split
        return Split(name, folder, [], error=_one_line(f'{type(e).__name__}: {e}'))
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    images = [info['img_path'] for info in infos]
    label_paths = None
    if labels:
        missing = [info['img_path'] for info in infos if not info.get('seg_map_path')]
        if missing:
            return Split(name, folder, [], error=f'image {missing[0]} has no label (data_prefix.seg_map_path?)')
        label_paths = [info['seg_map_path'] for info in infos]
    classes = (dataset.metainfo or {}).get('classes')
    return Split(name, folder, images, label_paths, num_classes=len(classes) if classes else None,
                 reduce_zero_label=bool(getattr(dataset, 'reduce_zero_label', False)), empty_hint=hint)


def translation_splits(f_cfg) -> List[Split]:
    """The source and target image lists of F's training set (``UnpairedTranslationDataset`` or any dataset with
    MMagic's ``data_infos_a``/``data_infos_b``)."""
    dataset_cfg = f_cfg.train_dataloader.dataset
    name = 'translation data (F: train_dataloader.dataset)'
    try:
        dataset = _build(dataset_cfg, 'mmagic')
    except Exception as e:  # noqa: BLE001 - reported in one line naming the split
        return [Split(name, '', [], error=_one_line(f'{type(e).__name__}: {e}'))]
    splits = []
    for side, attr in (('source', 'data_infos_a'), ('target', 'data_infos_b')):
        infos = getattr(dataset, attr, None)
        if infos is None:
            continue
        sub = dataset_cfg.get(side) or {}
        folder = osp.join(sub.get('data_root', ''), sub.get('img_dir', '')) if sub else '?'
        splits.append(Split(f'translation {side} (F: train_dataloader.dataset.{side})', folder,
                            [info['path'] for info in infos]))
    return splits


def translated_split(stage_name: str, translated_dir: str, source: Split, source_folder: str,
                     complete: bool) -> Split:
    """The translated copy the next M stages read: ``translated_dir/<source image relative to its folder>``, each
    the size of its source image or of its aspect ratio."""
    images, pairs = [], {}
    for img in source.images:
        out = osp.join(translated_dir, osp.relpath(img, source_folder))
        images.append(out)
        pairs[out] = img
    return Split(f'translated images ({stage_name})', translated_dir, images, pairs=pairs, optional=not complete)


def pseudo_label_split(stage_name: str, pseudo_dir: str, target: Split, target_folder: str, complete: bool,
                       num_classes: Optional[int]) -> Split:
    """The pseudo labels of a pseudo-label stage: one per target image, at the size in ``summary.json``."""
    summary_path = osp.join(pseudo_dir, 'summary.json')
    summary = {}
    if osp.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    elif complete:
        return Split(f'pseudo labels ({stage_name})', pseudo_dir, [], error=f'{summary_path} does not exist')
    labels = [osp.join(pseudo_dir, pseudo_label_name(img, target_folder)) for img in target.images]
    sizes = [(w, h) for h, w in summary.get('image_size', [])] or None
    extra = []
    if summary.get('mode') == 'soft':
        extra = [osp.splitext(lab)[0] + '_conf.png' for lab in labels]
    # the labels play the part of the images (their existence and header) and of the labels (ids, size)
    return Split(f'pseudo labels ({stage_name})', pseudo_dir, labels, labels, num_classes=num_classes,
                 label_sizes=sizes, extra=extra if complete else [], optional=not complete)


def plan_splits(plan, configs, state: Optional[dict] = None) -> List[Split]:
    """Every data set ``plan`` will read (see the module docstring); ``configs``: the run's
    :class:`~bdl_mm.engine.stage_configs.StageConfigBuilder` (outer config, F's config, the oracle's data set,
    work dir); ``state``: the completed stages (``bdl_state.json``'s ``stages``) of a resumed run."""
    from ..apis.translate import list_images
    state = state or {}
    cfg = configs.cfg
    uda = cfg.train_dataloader.dataset
    kinds = {s.kind for s in plan}
    splits = []
    source_cfg = uda.get('source', uda)
    source = seg_split('source train (train_dataloader.dataset.source)', source_cfg, labels=True)
    splits.append(source)
    target = None
    if 'target' in uda:
        target = seg_split('target train (train_dataloader.dataset.target)', uda.target, labels=False)
        splits.append(target)
    if cfg.get('val_dataloader') and cfg.val_dataloader.get('dataset'):
        splits.append(seg_split('target val (val_dataloader.dataset)', cfg.val_dataloader.dataset, labels=True))
    if TRANSLATION in kinds:  # every track reads M's image folders: the first translation stage's settings
        first = next(s for s in plan if s.kind == TRANSLATION)
        f_cfg = configs.translation_cfg(first, None)
        if configs.prealign(first) is not None:  # row 20: F's source is the run's own copy of M's (scanned above)
            f_cfg.train_dataloader.dataset.source = configs.m_image_folders()['source']
        splits += translation_splits(f_cfg)
    if ORACLE in kinds:  # train_cfg.references.oracle: the target's labelled train split
        splits.append(seg_split('target train with labels (train_cfg.references.oracle)', configs.oracle_dataset(),
                                labels=True))
    source_folder = _img_folder(source_cfg)
    if TRANSLATE in kinds:
        # the suffix the translate stage reads: its own setting, else the source's (its dataset class's default)
        suffix = configs.stage_cfgs[TRANSLATE].get('img_suffix', image_folder(source_cfg)['img_suffix'])
        rels = list_images(source_folder, suffix) if osp.isdir(source_folder) else []
        splits.append(Split(f'translate input ({source_folder})', source_folder,
                            [osp.join(source_folder, r) for r in rels], empty_hint=f' (img_suffix {suffix!r})'))
    # on --resume: what earlier stages wrote and later ones will read
    for stage in plan:
        record = state.get(stage.name) or {}
        done = record.get('status') == 'done'
        folder = osp.join(configs.work_dir, stage.name)
        if stage.kind == TRANSLATE and (done or osp.isdir(folder)):
            splits.append(translated_split(stage.name, record.get('translated_dir', folder) if done else folder,
                                           source, source_folder, done))
        elif stage.kind == PSEUDO_LABEL and target is not None and (done or osp.isdir(folder)):
            splits.append(pseudo_label_split(stage.name, record.get('pseudo_label_dir', folder) if done else folder,
                                             target, _img_folder(uda.target), done, target.num_classes))
    return splits


def preflight(plan, configs, mode: str = 'header', state: Optional[dict] = None, logger=None,
              report_dir: Optional[str] = None) -> Optional[dict]:
    """Scan every data set ``plan`` will read (:func:`plan_splits`; main process, the verdict is shared with every
    rank); write the report to ``<report_dir>/preflight.json`` (None: nowhere, e.g. ``tools/train.py
    --dry-run``); raise :class:`DataCheckError` on a problem. ``mode='none'`` skips."""
    from mmengine.dist import broadcast_object_list, is_distributed, is_main_process
    if mode not in CHECK_MODES:
        raise ValueError(f'train_cfg.check_data must be one of {CHECK_MODES}, got {mode!r}')
    if mode == 'none':
        if logger is not None:
            logger.info('[BDL] preflight: data checks skipped (check_data=none)', extra=CONSOLE)
        return None
    outcome = [None, None]
    if is_main_process():
        report = None
        try:
            report = scan(plan_splits(plan, configs, state), mode)
            outcome = [report, None]
        except DataCheckError as e:
            report = e.report or dict(mode=mode, errors=[str(e)])
            outcome = [report, str(e)]
        except Exception as e:  # noqa: BLE001 - a failure of the scan itself: the other ranks must not wait
            if not is_distributed():
                raise
            outcome = [dict(mode=mode, errors=[]), f'preflight failed: {type(e).__name__}: {e}']
        if report is not None and report_dir is not None:
            atomic_write_json(osp.join(report_dir, REPORT_FILE), report)
    broadcast_object_list(outcome)
    report, error = outcome
    if error is not None:
        if logger is not None:
            for line in report.get('errors', [])[:50]:
                logger.error(f'[BDL] preflight: {line}')
        raise DataCheckError(error)
    if logger is not None:
        logger.info(f'[BDL] preflight ({mode}): {report["files"]} files checked in {report["seconds"]:.2f} s '
                    f'({report["files_per_s"]} files/s, {report["threads"]} threads): ok', extra=CONSOLE)
    return report
