"""The files of a pseudo-label folder (layout in :mod:`bdl_mm.apis.pseudo_label`): labels and their weights,
the prediction cache and shard histograms, ``settings.json``, ``summary.json`` and the threshold study.
Every file is written through :mod:`bdl_mm.utils.atomic_io`."""
import glob
import json
import os
import os.path as osp
import shutil
import time
from typing import Dict, List, Optional

import cv2
import numpy as np
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from ..utils.atomic_io import atomic_write, atomic_write_bytes
from .ssl_thresholds import (
    dequantize_confidence,
    empty_histogram,
    kept_pixels_from_histogram,
    median_from_histogram,
    pseudo_label,
    threshold_study,
    weight_to_uint8,
)

CACHE_DIR = '_cache'
SETTINGS_FILE = 'settings.json'
SUMMARY_FILE = 'summary.json'
STUDY_CSV = 'threshold_study.csv'
STUDY_PNG = 'threshold_study.png'


def write_png(path: str, array: np.ndarray) -> None:
    """Lossless PNG whatever the file name ends with (the contract keeps the image's file name)."""
    ok, buf = cv2.imencode('.png', array)
    if not ok:
        raise IOError(f'could not encode {path}')
    atomic_write_bytes(path, buf.tobytes())


def save_npz(path: str, **arrays) -> None:
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def conf_path(label_path: str) -> str:
    """Soft-mode weight file of a pseudo label: ``<path without its extension>_conf.png`` (as UDADataset reads it)."""
    return osp.splitext(label_path)[0] + '_conf.png'


def write_threshold_study(out_dir: str, hist: np.ndarray) -> None:
    thresholds, ratios = threshold_study(hist)
    slope = np.gradient(ratios, thresholds)
    lines = ['threshold,kept_ratio,slope'] + [f'{t:.2f},{r:.6f},{s:.6f}' for t, r, s in zip(thresholds, ratios, slope)]
    atomic_write_bytes(osp.join(out_dir, STUDY_CSV), ('\n'.join(lines) + '\n').encode())
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
    atomic_write(osp.join(out_dir, STUDY_PNG), lambda tmp: fig.savefig(tmp, dpi=100, format='png'))
    plt.close(fig)


def summarize(settings: dict, hist: np.ndarray, shapes: np.ndarray, num_images: int, mode: str, threshold: float,
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


def shard_file(kind: str, run_id: str, shard_id: int, num_shards: int) -> str:
    return f'{kind}_{shard_id:03d}of{num_shards:03d}' + ('.npz' if kind == 'hist' else '')


def cache_file(cache_dir: str, rel: str) -> str:
    return osp.join(cache_dir, 'pred', rel + '.npz')


def label_outputs(out_dir: str, rel: str, mode: str) -> List[str]:
    path = osp.join(out_dir, rel)
    return [path, conf_path(path)] if mode == 'soft' else [path]


def remove_if_exists(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def check_out_dir(out_dir: str, settings: dict, overwrite: bool, run_id: str) -> None:
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
        remove_if_exists(osp.join(out_dir, name))
    for path in glob.glob(osp.join(out_dir, CACHE_DIR, '*')):
        if osp.basename(path) != run_id:
            shutil.rmtree(path, ignore_errors=True)


def write_label(out_dir: str, rel: str, label: np.ndarray, conf_q: np.ndarray, mode: str, threshold: float,
                 thresholds: Optional[np.ndarray]) -> None:
    pl, weight = pseudo_label(label, dequantize_confidence(conf_q), mode, threshold, thresholds)
    path = osp.join(out_dir, rel)
    if mode == 'soft':
        write_png(conf_path(path), weight_to_uint8(weight))
    write_png(path, pl)  # the label last: its presence marks the image as done


def gather_shard_histograms(cache_dir, run_id, num_classes, num_shards, wait, poll_interval, timeout):
    files = [osp.join(cache_dir, shard_file('hist', run_id, k, num_shards)) for k in range(num_shards)]
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


def write_missing_labels(rel_paths, indices, out_dir, cache_dir, mode, threshold, thresholds, progress):
    """Write the labels still missing (all of them in class_median mode) from the cached predictions."""
    todo = [i for i in indices if not all(map(osp.exists, label_outputs(out_dir, rel_paths[i], mode)))]
    bar = ProgressBar(len(todo)) if progress and todo else None
    for i in todo:
        cached = cache_file(cache_dir, rel_paths[i])
        if not osp.exists(cached):
            raise FileNotFoundError(f'{cached} is missing (prediction cache deleted?); rerun with overwrite=True')
        with np.load(cached) as f:
            write_label(out_dir, rel_paths[i], f['label'], f['conf'], mode, threshold, thresholds)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')


def load_summary(out_dir: str) -> Dict:
    """The ``summary.json`` of a finished pseudo-label folder."""
    with open(osp.join(out_dir, SUMMARY_FILE)) as f:
        return json.load(f)
