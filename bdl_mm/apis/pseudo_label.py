# Copyright (c) bdl_mm contributors.
"""SSL step of BDL (paper Sec. 3.2, 4.3): M labels the target images it is confident about.

:func:`generate_pseudo_labels` runs a segmentor over the target train set and writes the pseudo-label folder of
``docs/design.md``::

    <out_dir>/<image path relative to the dataset's img_path prefix>   uint8 PNG, 255 = ignored, same file name
    <out_dir>/<same path without .png>_conf.png                       soft mode only: round(255 * max prob)
    <out_dir>/summary.json                                            settings, per-class thresholds, kept ratios
    <out_dir>/threshold_study.csv / .png                              paper Fig. 5 (kept ratio vs threshold)
    <out_dir>/settings.json                                           what the folder was made with (resume check)
    <out_dir>/_cache/<run id>/                                        per-image predictions, shard histograms

Labels are taken at the size M runs at (each image's ``img_shape``). With a :class:`BDLEncoderDecoder` whose
``test_cfg.upsample`` is ``'probs'`` (the release, ``SSL.py``): softmax of the head's logits at its own resolution,
probabilities upsampled once (bilinear, the head's ``align_corners``) to the network input, then max and argmax.
Otherwise MMSeg's order: the segmentor's ``encode_decode`` output (``inference`` if its ``test_cfg`` asks for
slide inference: logits resized bilinearly to the network input), then softmax, max and argmax. Both are
cropped to each image's ``img_shape``. The threshold rules are in
:mod:`bdl_mm.apis.ssl_thresholds`.

Memory is constant in the number of images (the release keeps two float64 arrays of N x 512 x 1024):

- pass 1 runs M batch by batch, stores every image's argmax (uint8) and quantised confidence (uint16) as a
  compressed ``.npz`` in ``_cache`` and adds it to per-class confidence histograms (one bin per quantisation
  level, so the class medians are exact for the quantised confidences); ``global`` and ``soft`` write their
  PNGs in this pass already (single pass over M);
- the histograms of all shards are summed (``all_reduce`` under torch.distributed, else the shard files);
- pass 2 (``class_median``) applies the thresholds to the cached predictions and writes the PNGs.

Every file is written atomically (temporary file + ``os.replace``) and skipped when present, so an interrupted run
resumes where it stopped. A folder made with other settings is refused unless ``overwrite=True``.
"""
import glob
import hashlib
import json
import os
import os.path as osp
import shutil
import time
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from mmengine.dataset import BaseDataset, pseudo_collate
from mmengine.dist import all_reduce, barrier, get_dist_info, is_distributed
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Subset

from ..datasets.file_checks import name_file_errors
from ..datasets.uda_dataset import pseudo_label_name
from .ssl_thresholds import (
    CONF_LEVELS,
    MODES,
    accumulate_histogram,
    class_median_thresholds,
    dequantize_confidence,
    empty_histogram,
    kept_pixels_from_histogram,
    median_from_histogram,
    pseudo_label,
    quantize_confidence,
    threshold_study,
    weight_to_uint8,
)

CACHE_DIR = '_cache'
SETTINGS_FILE = 'settings.json'
SUMMARY_FILE = 'summary.json'
STUDY_CSV = 'threshold_study.csv'
STUDY_PNG = 'threshold_study.png'
# transforms that make no sense when labelling the target: random augmentation and label loading
_DROP_FOR_INFERENCE = ('RandomFlip', 'RandomCrop', 'RandomResize', 'RandomRotate', 'RandomRotFlip', 'RandomCutOut',
                       'RandomMosaic', 'PhotoMetricDistortion', 'RandomChoiceResize', 'LoadAnnotations',
                       'LoadPseudoLabel')


# ----------------------------------------------------------------------------------------------------- helpers
def _atomic_write_bytes(path: str, data: bytes) -> None:
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


def _atomic_write_json(path: str, obj) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2) + '\n').encode())


def _write_png(path: str, array: np.ndarray) -> None:
    """Lossless PNG whatever the file name ends with (the contract keeps the image's file name)."""
    ok, buf = cv2.imencode('.png', array)
    if not ok:
        raise IOError(f'could not encode {path}')
    _atomic_write_bytes(path, buf.tobytes())


def _save_npz(path: str, **arrays) -> None:
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write_bytes(path, buf.getvalue())


def conf_path(label_path: str) -> str:
    """Soft-mode weight file of a pseudo label: ``<path without its extension>_conf.png`` (as UDADataset reads it)."""
    return osp.splitext(label_path)[0] + '_conf.png'


def unwrap_segmentor(model: torch.nn.Module) -> torch.nn.Module:
    """The MMSeg segmentor inside a DDP wrapper and/or a ``BDLSegmentor`` (attribute ``segmentor``)."""
    if is_model_wrapper(model):
        model = model.module
    if not hasattr(model, 'encode_decode') and hasattr(model, 'segmentor'):
        model = model.segmentor
    if not hasattr(model, 'encode_decode') or not hasattr(model, 'data_preprocessor'):
        raise TypeError(f'{type(model).__name__} is not an MMSeg segmentor (no encode_decode/data_preprocessor)')
    return model


def model_num_classes(model: torch.nn.Module) -> int:
    head = getattr(model, 'decode_head', None)
    n = getattr(head, 'num_classes', None) or getattr(model, 'num_classes', None)
    if n is None:
        raise TypeError(f'cannot tell the number of classes of {type(model).__name__} (no decode_head.num_classes)')
    return int(n)


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha1 over the state dict (names, shapes, values): identifies the weights a folder was made with."""
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f'{name}{tuple(t.shape)}{t.dtype}'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return h.hexdigest()


def inference_pipeline(pipeline: Sequence[dict]) -> List[dict]:
    """A target training pipeline made deterministic: random augmentation and label loading dropped,
    ``PackUDAInputs`` replaced by ``PackSegInputs``."""
    out = []
    for t in pipeline:
        kind = str(t.get('type', '')).split('.')[-1]
        if kind in _DROP_FOR_INFERENCE:
            continue
        if kind == 'PackUDAInputs':
            t = dict(type='PackSegInputs')
        out.append(t)
    return out


def build_target_dataset(dataset_cfg) -> BaseDataset:
    """Build the target set from a dataset config (MMSeg registry), with :func:`inference_pipeline`."""
    from mmengine.config import ConfigDict
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = ConfigDict(dataset_cfg).copy() if isinstance(dataset_cfg, dict) else dataset_cfg
    if 'pipeline' in cfg:
        cfg['pipeline'] = inference_pipeline(cfg['pipeline'])
    return DATASETS.build(cfg)


def target_dataset_cfg(cfg) -> dict:
    """The target train set of a config: ``pseudo_label_dataset`` if present, else the ``target`` of a
    ``UDADataset`` train set, else the train set itself."""
    if cfg.get('pseudo_label_dataset') is not None:
        return cfg['pseudo_label_dataset']
    train = cfg.get('train_dataloader', {}).get('dataset')
    if train is None:
        raise KeyError('the config has neither pseudo_label_dataset nor train_dataloader.dataset')
    if str(train.get('type', '')).split('.')[-1] == 'UDADataset' or 'target' in train:
        return train['target']
    return train


def _as_loader_parts(dataloader_or_dataset_cfg, batch_size, num_workers):
    """(dataset, batch_size, num_workers, collate_fn) from a DataLoader, a dataset, or a (dataloader) config."""
    obj = dataloader_or_dataset_cfg
    if isinstance(obj, DataLoader):
        return obj.dataset, batch_size or obj.batch_size or 1, obj.num_workers, obj.collate_fn
    if isinstance(obj, BaseDataset):
        return obj, batch_size or 1, num_workers, pseudo_collate
    if isinstance(obj, dict):
        if 'dataset' in obj and 'type' not in obj:  # a dataloader config
            dataset = obj['dataset']
            dataset = dataset if isinstance(dataset, BaseDataset) else build_target_dataset(dataset)
            return dataset, batch_size or obj.get('batch_size', 1), obj.get('num_workers', num_workers), pseudo_collate
        return build_target_dataset(obj), batch_size or 1, num_workers, pseudo_collate
    raise TypeError(f'expected a DataLoader, a dataset or a dataset config, got {type(obj).__name__}')


def _relative_paths(dataset: BaseDataset) -> List[str]:
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    prefix = (getattr(dataset, 'data_prefix', None) or {}).get('img_path', '') or ''
    rels = []
    for i in range(len(dataset)):
        rels.append(pseudo_label_name(dataset.get_data_info(i)['img_path'], prefix))
    if len(set(rels)) != len(rels):
        raise ValueError('the target set holds two images with the same relative path; pseudo labels would collide')
    return rels


def _dataset_classes(dataset) -> Optional[int]:
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    return None if classes is None else len(classes)


def _write_study(out_dir: str, hist: np.ndarray) -> None:
    thresholds, ratios = threshold_study(hist)
    slope = np.gradient(ratios, thresholds)
    lines = ['threshold,kept_ratio,slope'] + [f'{t:.2f},{r:.6f},{s:.6f}' for t, r, s in zip(thresholds, ratios, slope)]
    _atomic_write_bytes(osp.join(out_dir, STUDY_CSV), ('\n'.join(lines) + '\n').encode())
    import matplotlib
    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].plot(thresholds, ratios, 'o-', ms=3)
    axes[0].set(xlabel='prediction confidence threshold', ylabel='ratio of selected pixels', title='kept ratio')
    axes[1].plot(thresholds, slope, 'o-', ms=3)
    axes[1].set(xlabel='prediction confidence threshold', ylabel='d ratio / d threshold', title='slope')
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = osp.join(out_dir, f'.{STUDY_PNG}.tmp{os.getpid()}.png')
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, osp.join(out_dir, STUDY_PNG))


def _summary(settings: dict, hist: np.ndarray, shapes: np.ndarray, num_images: int, mode: str, threshold: float,
             thresholds: Optional[np.ndarray]) -> dict:
    predicted = hist.sum(1)
    kept = kept_pixels_from_histogram(hist, mode, threshold, thresholds)
    total = int(predicted.sum())
    summary = dict(settings)
    summary.update(
        num_images=num_images,
        image_size=[list(map(int, s)) for s in shapes],  # (h, w) of the written labels
        total_pixels=total,
        class_thresholds=None if thresholds is None else [None if not np.isfinite(t) else float(t) for t in thresholds],
        class_medians=[None if not np.isfinite(m) else float(m) for m in median_from_histogram(hist)],
        kept_ratio=float(kept.sum() / total) if total else 0.0,
        kept_ratio_per_class=[float(k / p) if p else None for k, p in zip(kept, predicted)],
        kept_pixels_per_class=[int(k) for k in kept],
        predicted_pixels_per_class=[int(p) for p in predicted],
    )
    if mode == 'soft':
        values = dequantize_confidence(np.arange(hist.shape[1]))
        summary['mean_weight'] = float((hist.sum(0) * values).sum() / total) if total else 0.0
    return summary


# ---------------------------------------------------------------------------------------------------- the API
def generate_pseudo_labels(model: torch.nn.Module,
                           dataloader_or_dataset_cfg: Union[DataLoader, BaseDataset, dict],
                           out_dir: str,
                           mode: str = 'class_median',
                           threshold: float = 0.9,
                           median: str = 'release',
                           batch_size: Optional[int] = None,
                           num_workers: int = 0,
                           shard_id: Optional[int] = None,
                           num_shards: Optional[int] = None,
                           overwrite: bool = False,
                           keep_cache: bool = False,
                           wait_for_shards: bool = True,
                           poll_interval: float = 5.0,
                           shard_timeout: Optional[float] = None,
                           checkpoint: Optional[str] = None,
                           config: Optional[str] = None,
                           progress: bool = True) -> dict:
    """Pseudo-label the target set with ``model`` and write the pseudo-label folder ``out_dir``.

    Args:
        model: an MMSeg segmentor (``EncoderDecoder``), possibly inside a ``BDLSegmentor`` (``.segmentor``) or a
            DDP wrapper. It is put in eval mode for the run and restored afterwards.
        dataloader_or_dataset_cfg: the target train set: a DataLoader, a dataset, a dataset config, or a dataloader
            config (``dict(batch_size=..., num_workers=..., dataset=...)``). Config pipelines are made
            deterministic by :func:`inference_pipeline`.
        out_dir: the pseudo-label folder (layout in the module docstring).
        mode: ``'global'`` (paper: keep conf > threshold), ``'class_median'`` (release default: per-class
            ``min(median, threshold)``, keep conf >= it) or ``'soft'`` (paper Table 3: all pixels, weight = conf).
        threshold: the global threshold / the cap of the class thresholds.
        median: ``class_median``'s per-class statistic: ``'release'`` (``sorted[round(n / 2)]``, the authors'
            ``SSL.py``, default) or ``'numpy'`` (``numpy.median``).
        batch_size, num_workers: inference loader settings (default: the DataLoader's, else 1 and 0).
        shard_id, num_shards: process ``shard_id`` labels images ``shard_id::num_shards``. Default: the
            torch.distributed rank / world size (histograms are then all-reduced), else a single shard.
            Independent shard processes exchange histograms through ``_cache/<run id>/hist_*.npz``.
        overwrite: replace the files of a previous run made with other settings (otherwise refused).
        keep_cache: keep the per-image prediction cache once the shard is done (default: delete it).
        wait_for_shards: independent shards wait (``poll_interval`` s, up to ``shard_timeout`` s) for the others'
            histograms; if False, the call returns after pass 1 with ``complete=False`` (rerun it to finish).
        checkpoint, config: recorded in the summary.
        progress: show a progress bar.

    Returns:
        The summary dict (also written to ``summary.json`` once every shard is done) with ``complete``; only the
        settings and ``complete=False`` when ``wait_for_shards=False`` and other shards have not finished pass 1.
    """
    if mode not in MODES:
        raise ValueError(f'unknown pseudo-label mode {mode!r}; expected one of {MODES}')
    if median not in ('release', 'numpy'):
        raise ValueError(f"median must be 'release' or 'numpy', got {median!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f'threshold must be in (0, 1], got {threshold}')
    threshold = float(threshold)
    segmentor = unwrap_segmentor(model)

    distributed = shard_id is None and num_shards is None and is_distributed()
    if distributed:
        shard_id, num_shards = get_dist_info()
    else:
        shard_id, num_shards = int(shard_id or 0), int(num_shards or 1)
    if not 0 <= shard_id < num_shards:
        raise ValueError(f'shard_id must be in [0, {num_shards}), got {shard_id}')

    dataset, batch_size, num_workers, collate_fn = _as_loader_parts(dataloader_or_dataset_cfg, batch_size,
                                                                    num_workers)
    name_file_errors(dataset)  # a target image that cannot be read fails in one line naming it
    num_classes = model_num_classes(segmentor)
    if num_classes > 255:
        raise ValueError(f'pseudo labels are uint8 with 255 = ignored; {num_classes} classes do not fit')
    dataset_classes = _dataset_classes(dataset)
    if dataset_classes is not None and dataset_classes != num_classes:
        raise ValueError(f'the model predicts {num_classes} classes but the target set '
                         f'{type(dataset).__name__} has {dataset_classes}; nothing was written')
    rel_paths = _relative_paths(dataset)
    if not rel_paths:
        raise ValueError(f'the target set {type(dataset).__name__} is empty')

    settings = dict(
        mode=mode,
        threshold=threshold,
        median=median,
        num_classes=num_classes,
        num_images=len(rel_paths),
        images_sha1=hashlib.sha1('\n'.join(rel_paths).encode()).hexdigest(),
        num_shards=num_shards,
        conf_levels=CONF_LEVELS,
        model_sha1=model_fingerprint(segmentor),
    )
    run_id = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    info = dict(checkpoint=checkpoint, config=config, dataset=type(dataset).__name__,
                classes=list((getattr(dataset, 'metainfo', None) or {}).get('classes') or []))
    cache_dir = osp.join(out_dir, CACHE_DIR, run_id)
    my_indices = list(range(shard_id, len(rel_paths), num_shards))
    _check_out_dir(out_dir, settings, overwrite, run_id)
    if distributed:
        barrier()  # nobody writes before every rank has checked the folder
    _atomic_write_json(osp.join(out_dir, SETTINGS_FILE), settings)
    os.makedirs(cache_dir, exist_ok=True)

    show_progress = progress and (not distributed or shard_id == 0)
    was_training = segmentor.training
    segmentor.eval()
    try:
        hist, shapes = _pass1(segmentor, dataset, rel_paths, my_indices, out_dir, cache_dir, mode, threshold,
                              batch_size, num_workers, collate_fn, num_classes, run_id, shard_id, num_shards,
                              show_progress)
    finally:
        segmentor.train(was_training)

    # ---- global histograms
    if distributed:
        t = torch.from_numpy(hist)
        device = next(segmentor.parameters()).device if torch.distributed.get_backend() == 'nccl' else 'cpu'
        t = t.to(device)
        all_reduce(t, op='sum')
        hist = t.cpu().numpy()
        shape_list = [None] * num_shards
        torch.distributed.all_gather_object(shape_list, shapes.tolist())
        shapes = np.unique(np.array([s for part in shape_list for s in part]).reshape(-1, 2), axis=0)
    elif num_shards > 1:
        total = _gather_shard_histograms(cache_dir, run_id, num_classes, num_shards, wait_for_shards, poll_interval,
                                         shard_timeout)
        if total is None:  # --no-wait and other shards still running: nothing to summarise yet
            return dict(settings, **info, complete=False, shard_id=shard_id)
        hist, shapes = total

    thresholds = class_median_thresholds(hist, threshold, median) if mode == 'class_median' else None
    _pass2(rel_paths, my_indices, out_dir, cache_dir, mode, threshold, thresholds, show_progress)
    if not keep_cache:
        for i in my_indices:
            _remove(_cache_file(cache_dir, rel_paths[i]))
    open(osp.join(cache_dir, _shard_file('done', run_id, shard_id, num_shards)), 'w').close()

    summary = _summary(dict(settings, **info), hist, shapes, len(rel_paths), mode, threshold, thresholds)
    if distributed:
        barrier()  # every rank has written its labels (the folder may not be shared for the markers)
        done = True
    else:
        done = all(osp.exists(osp.join(cache_dir, _shard_file('done', run_id, k, num_shards)))
                   for k in range(num_shards))
    if done and (shard_id == 0 or not distributed):
        _write_study(out_dir, hist)
        _atomic_write_json(osp.join(out_dir, SUMMARY_FILE), summary)
        print_log(f'pseudo labels ({mode}) for {len(rel_paths)} images in {out_dir}: kept '
                  f'{100 * summary["kept_ratio"]:.1f}% of the pixels', logger='current')
    if distributed:
        barrier()  # every rank returns once summary.json exists
    summary['complete'] = done
    return summary


# ---------------------------------------------------------------------------------------------------- passes
def _shard_file(kind: str, run_id: str, shard_id: int, num_shards: int) -> str:
    return f'{kind}_{shard_id:03d}of{num_shards:03d}' + ('.npz' if kind == 'hist' else '')


def _cache_file(cache_dir: str, rel: str) -> str:
    return osp.join(cache_dir, 'pred', rel + '.npz')


def _label_outputs(out_dir: str, rel: str, mode: str) -> List[str]:
    path = osp.join(out_dir, rel)
    return [path, conf_path(path)] if mode == 'soft' else [path]


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _check_out_dir(out_dir: str, settings: dict, overwrite: bool, run_id: str) -> None:
    """Refuse a folder made with other settings (or not made by this tool) unless ``overwrite``."""
    settings_file = osp.join(out_dir, SETTINGS_FILE)
    if not osp.isdir(out_dir) or not os.listdir(out_dir):
        return
    old = None
    if osp.exists(settings_file):
        with open(settings_file) as f:
            old = json.load(f)
        if old == settings:
            return
    if not overwrite:
        if old is None:
            raise FileExistsError(f'{out_dir} is not empty and holds no {SETTINGS_FILE} of a pseudo-label run; '
                                  'pass overwrite=True (--overwrite) to write into it')
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise FileExistsError(f'{out_dir} holds pseudo labels made with other settings ({", ".join(diff)} differ); '
                              'pass overwrite=True (--overwrite) to replace them')
    # overwrite: the run-level files go; per-run caches live in _cache/<run id>, so the caches of other runs go
    # too, and pass 1 deletes the stale label of every image it predicts afresh
    for name in (SETTINGS_FILE, SUMMARY_FILE, STUDY_CSV, STUDY_PNG):
        _remove(osp.join(out_dir, name))
    for path in glob.glob(osp.join(out_dir, CACHE_DIR, '*')):
        if osp.basename(path) != run_id:
            shutil.rmtree(path, ignore_errors=True)


def _write_label(out_dir: str, rel: str, label: np.ndarray, conf_q: np.ndarray, mode: str, threshold: float,
                 thresholds: Optional[np.ndarray]) -> None:
    pl, weight = pseudo_label(label, dequantize_confidence(conf_q), mode, threshold, thresholds)
    path = osp.join(out_dir, rel)
    if mode == 'soft':
        _write_png(conf_path(path), weight_to_uint8(weight))
    _write_png(path, pl)  # the label last: its presence marks the image as done


def _pass1(segmentor, dataset, rel_paths, indices, out_dir, cache_dir, mode, threshold, batch_size, num_workers,
           collate_fn, num_classes, run_id, shard_id, num_shards, progress):
    """Run M over this shard's images (those without a cached prediction), cache the predictions, build the
    shard histogram. Returns (histogram, unique (h, w) label shapes)."""
    hist_file = osp.join(cache_dir, _shard_file('hist', run_id, shard_id, num_shards))
    if osp.exists(hist_file):
        with np.load(hist_file) as f:
            return f['hist'], f['shapes']
    hist = empty_histogram(num_classes)
    shapes = set()
    todo = []
    for i in indices:
        cached = _cache_file(cache_dir, rel_paths[i])
        if osp.exists(cached):  # resumed: count it, write a missing label
            with np.load(cached) as f:
                label, conf_q = f['label'], f['conf']
            accumulate_histogram(hist, label, conf_q)
            shapes.add(label.shape)
            if mode != 'class_median' and not all(map(osp.exists, _label_outputs(out_dir, rel_paths[i], mode))):
                _write_label(out_dir, rel_paths[i], label, conf_q, mode, threshold, None)
        else:
            todo.append(i)
            for path in _label_outputs(out_dir, rel_paths[i], mode):
                _remove(path)  # a label of another run must not pass for done in pass 2
    if todo:
        loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, num_workers=num_workers,
                            collate_fn=collate_fn, shuffle=False)
        bar = ProgressBar(len(todo)) if progress else None
        pos = 0
        with torch.no_grad():
            for batch in loader:
                data = segmentor.data_preprocessor(batch, False)
                samples = data['data_samples']
                probs = segmentor_probs(segmentor, data['inputs'], [s.metainfo for s in samples])
                if probs.shape[1] != num_classes:
                    raise ValueError(f'the model returned {probs.shape[1]} channels, expected {num_classes}')
                conf, label = probs.max(dim=1)
                label = label.to(torch.uint8).cpu().numpy()
                conf_q = quantize_confidence(conf.cpu().numpy())
                for j, sample in enumerate(samples):
                    h, w = sample.metainfo['img_shape'][:2]
                    lab, cq = np.ascontiguousarray(label[j, :h, :w]), np.ascontiguousarray(conf_q[j, :h, :w])
                    rel = rel_paths[todo[pos]]
                    _save_npz(_cache_file(cache_dir, rel), label=lab, conf=cq)
                    accumulate_histogram(hist, lab, cq)
                    shapes.add(lab.shape)
                    if mode != 'class_median':
                        _write_label(out_dir, rel, lab, cq, mode, threshold, None)
                    pos += 1
                    if bar is not None:
                        bar.update()
        if bar is not None:
            bar.file.write('\n')
    shapes = np.array(sorted(shapes), dtype=np.int64).reshape(-1, 2)
    _save_npz(hist_file, hist=hist, shapes=shapes)
    return hist, shapes


def segmentor_probs(segmentor, inputs: torch.Tensor, metas: List[dict]) -> torch.Tensor:
    """Class probabilities (float32) at the network input size.

    Release order (``BDLEncoderDecoder`` with ``test_cfg.upsample='probs'``): softmax at the head's resolution,
    one bilinear upsampling of the probabilities. Otherwise MMSeg's: logits from ``inference`` (whole or slide,
    per ``test_cfg.mode``; ``encode_decode`` for whole-image inference), then softmax."""
    if getattr(segmentor, 'upsample', 'logits') == 'probs' and hasattr(segmentor, 'predict_probs'):
        return segmentor.predict_probs(inputs, inputs.shape[2:])
    test_cfg = getattr(segmentor, 'test_cfg', None) or {}
    if test_cfg.get('mode', 'whole') == 'whole' or not hasattr(segmentor, 'inference'):
        logits = segmentor.encode_decode(inputs, metas)
    else:
        logits = segmentor.inference(inputs, metas)
    return logits.float().softmax(dim=1)


def _gather_shard_histograms(cache_dir, run_id, num_classes, num_shards, wait, poll_interval, timeout):
    files = [osp.join(cache_dir, _shard_file('hist', run_id, k, num_shards)) for k in range(num_shards)]
    start = time.time()
    while not all(map(osp.exists, files)):
        missing = [k for k, f in enumerate(files) if not osp.exists(f)]
        if not wait or (timeout is not None and time.time() - start > timeout):
            print_log(f'pseudo labels: shards {missing} have not finished pass 1; rerun to finish', logger='current')
            return None
        time.sleep(poll_interval)
    hist = empty_histogram(num_classes)
    shapes = []
    for f in files:
        with np.load(f) as data:
            hist += data['hist']
            shapes.append(data['shapes'])
    return hist, np.unique(np.concatenate(shapes).reshape(-1, 2), axis=0)


def _pass2(rel_paths, indices, out_dir, cache_dir, mode, threshold, thresholds, progress):
    """Write the labels still missing (all of them in class_median mode) from the cached predictions."""
    todo = [i for i in indices if not all(map(osp.exists, _label_outputs(out_dir, rel_paths[i], mode)))]
    bar = ProgressBar(len(todo)) if progress and todo else None
    for i in todo:
        cached = _cache_file(cache_dir, rel_paths[i])
        if not osp.exists(cached):
            raise FileNotFoundError(f'{cached} is missing (prediction cache deleted?); rerun with overwrite=True')
        with np.load(cached) as f:
            _write_label(out_dir, rel_paths[i], f['label'], f['conf'], mode, threshold, thresholds)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')


def load_summary(out_dir: str) -> Dict:
    """The ``summary.json`` of a finished pseudo-label folder."""
    with open(osp.join(out_dir, SUMMARY_FILE)) as f:
        return json.load(f)
