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
import hashlib
import json
import os
import os.path as osp
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.dist import all_reduce, barrier, get_dist_info, is_distributed
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Subset

from ..datasets.file_checks import name_file_errors
from ..utils.atomic_io import atomic_write_json
from .pseudo_label_files import (  # noqa: F401 - conf_path, load_summary and the file names are public here too
    CACHE_DIR,
    SETTINGS_FILE,
    STUDY_CSV,
    STUDY_PNG,
    SUMMARY_FILE,
    cache_file,
    check_out_dir,
    conf_path,
    gather_shard_histograms,
    label_outputs,
    load_summary,
    remove_if_exists,
    save_npz,
    shard_file,
    summarize,
    write_label,
    write_missing_labels,
    write_png,
    write_threshold_study,
)
from .ssl_thresholds import (
    CONF_LEVELS,
    MODES,
    accumulate_histogram,
    class_median_thresholds,
    empty_histogram,
    quantize_confidence,
)
from .target_set import (  # noqa: F401 - the target-set helpers are public here too
    as_loader_parts,
    build_target_dataset,
    dataset_num_classes,
    inference_pipeline,
    relative_paths,
    target_dataset_cfg,
)

# ----------------------------------------------------------------------------------------------------- helpers


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


# ---------------------------------------------------------------------------------------------------- the API
def generate_pseudo_labels(model: torch.nn.Module,
                           dataloader_or_dataset_cfg: Union[DataLoader, BaseDataset, dict],
                           out_dir: str,
                           mode: str = 'class_median',
                           threshold: float = 0.9,
                           median: str = 'release',
                           floor: Optional[float] = None,
                           portion: Optional[float] = None,
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
        floor: ``class_median`` only, not in the release (None: off): the least class threshold,
            ``max(min(median_c, threshold), floor)``.
        portion: ``class_median`` only, not in the release (None: off): keep the top ``portion`` of each predicted
            class's pixels (class-balanced selection, CBST) instead of the top half; 0.5 is the release's median.
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
    if floor is not None:
        if mode != 'class_median':
            raise ValueError(f"floor applies to mode='class_median' only, got mode={mode!r}")
        if not 0.0 <= float(floor) <= threshold:
            raise ValueError(f'floor must be in [0, threshold={threshold}], got {floor}')
        floor = float(floor)
    if portion is not None:
        if mode != 'class_median':
            raise ValueError(f"portion applies to mode='class_median' only, got mode={mode!r}")
        if not 0.0 < float(portion) <= 1.0:
            raise ValueError(f'portion must be in (0, 1], got {portion}')
        portion = float(portion)
    segmentor = unwrap_segmentor(model)

    distributed = shard_id is None and num_shards is None and is_distributed()
    if distributed:
        shard_id, num_shards = get_dist_info()
    else:
        shard_id, num_shards = int(shard_id or 0), int(num_shards or 1)
    if not 0 <= shard_id < num_shards:
        raise ValueError(f'shard_id must be in [0, {num_shards}), got {shard_id}')

    dataset, batch_size, num_workers, collate_fn = as_loader_parts(dataloader_or_dataset_cfg, batch_size,
                                                                    num_workers)
    name_file_errors(dataset)  # a target image that cannot be read fails in one line naming it
    num_classes = model_num_classes(segmentor)
    if num_classes > 255:
        raise ValueError(f'pseudo labels are uint8 with 255 = ignored; {num_classes} classes do not fit')
    dataset_classes = dataset_num_classes(dataset)
    if dataset_classes is not None and dataset_classes != num_classes:
        raise ValueError(f'the model predicts {num_classes} classes but the target set '
                         f'{type(dataset).__name__} has {dataset_classes}; nothing was written')
    rel_paths = relative_paths(dataset)
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
        **({} if floor is None else dict(floor=floor)),  # absent when off: the release's settings are unchanged
        **({} if portion is None else dict(portion=portion)),
    )
    run_id = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    info = dict(checkpoint=checkpoint, config=config, dataset=type(dataset).__name__,
                classes=list((getattr(dataset, 'metainfo', None) or {}).get('classes') or []))
    cache_dir = osp.join(out_dir, CACHE_DIR, run_id)
    my_indices = list(range(shard_id, len(rel_paths), num_shards))
    check_out_dir(out_dir, settings, overwrite, run_id)
    if distributed:
        barrier()  # nobody writes before every rank has checked the folder
    atomic_write_json(osp.join(out_dir, SETTINGS_FILE), settings)
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
        total = gather_shard_histograms(cache_dir, run_id, num_classes, num_shards, wait_for_shards, poll_interval,
                                         shard_timeout)
        if total is None:  # --no-wait and other shards still running: nothing to summarise yet
            return dict(settings, **info, complete=False, shard_id=shard_id)
        hist, shapes = total

    thresholds = class_median_thresholds(hist, threshold, median, floor, portion) if mode == 'class_median' else None
    write_missing_labels(rel_paths, my_indices, out_dir, cache_dir, mode, threshold, thresholds, show_progress)
    if not keep_cache:
        for i in my_indices:
            remove_if_exists(cache_file(cache_dir, rel_paths[i]))
    open(osp.join(cache_dir, shard_file('done', run_id, shard_id, num_shards)), 'w').close()

    summary = summarize(dict(settings, **info), hist, shapes, len(rel_paths), mode, threshold, thresholds)
    if distributed:
        barrier()  # every rank has written its labels (the folder may not be shared for the markers)
        done = True
    else:
        done = all(osp.exists(osp.join(cache_dir, shard_file('done', run_id, k, num_shards)))
                   for k in range(num_shards))
    if done and (shard_id == 0 or not distributed):
        write_threshold_study(out_dir, hist)
        atomic_write_json(osp.join(out_dir, SUMMARY_FILE), summary)
        print_log(f'pseudo labels ({mode}) for {len(rel_paths)} images in {out_dir}: kept '
                  f'{100 * summary["kept_ratio"]:.1f}% of the pixels', logger='current')
    if distributed:
        barrier()  # every rank returns once summary.json exists
    summary['complete'] = done
    return summary


# ---------------------------------------------------------------------------------------------------- passes


def _pass1(segmentor, dataset, rel_paths, indices, out_dir, cache_dir, mode, threshold, batch_size, num_workers,
           collate_fn, num_classes, run_id, shard_id, num_shards, progress):
    """Run M over this shard's images (those without a cached prediction), cache the predictions, build the
    shard histogram. Returns (histogram, unique (h, w) label shapes)."""
    hist_file = osp.join(cache_dir, shard_file('hist', run_id, shard_id, num_shards))
    if osp.exists(hist_file):
        with np.load(hist_file) as f:
            return f['hist'], f['shapes']
    hist = empty_histogram(num_classes)
    shapes = set()
    todo = []
    for i in indices:
        cached = cache_file(cache_dir, rel_paths[i])
        if osp.exists(cached):  # resumed: count it, write a missing label
            with np.load(cached) as f:
                label, conf_q = f['label'], f['conf']
            accumulate_histogram(hist, label, conf_q)
            shapes.add(label.shape)
            if mode != 'class_median' and not all(map(osp.exists, label_outputs(out_dir, rel_paths[i], mode))):
                write_label(out_dir, rel_paths[i], label, conf_q, mode, threshold, None)
        else:
            todo.append(i)
            for path in label_outputs(out_dir, rel_paths[i], mode):
                remove_if_exists(path)  # a label of another run must not pass for done in pass 2
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
                    save_npz(cache_file(cache_dir, rel), label=lab, conf=cq)
                    accumulate_histogram(hist, lab, cq)
                    shapes.add(lab.shape)
                    if mode != 'class_median':
                        write_label(out_dir, rel, lab, cq, mode, threshold, None)
                    pos += 1
                    if bar is not None:
                        bar.update()
        if bar is not None:
            bar.file.write('\n')
    shapes = np.array(sorted(shapes), dtype=np.int64).reshape(-1, 2)
    save_npz(hist_file, hist=hist, shapes=shapes)
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


