"""Per-stage diagnostics of Algorithm 1 that need no target labels (and, where target-train labels exist, the
pseudo-label precision): what each translation and each SSL round did, to explain a result without looking at it.

- :func:`translation_consistency`: mIoU of M(k-1) on S and on S' = F(S) against the source labels. F is trained to
  keep M's predictions (the perceptual loss): a large drop on S' means F changed the content, not only the look.
- :func:`image_statistics` / :func:`statistics_distance`: per-channel mean and standard deviation (BGR, 0-255) of an
  image set, and the distance between two sets (mean absolute difference of the 6 numbers); S -> T against
  S' -> T says how far the translation moved the source towards the target's colour statistics.
- :func:`edge_consistency`: correlation of the edge maps (Sobel gradient magnitude) of each source image and its
  translation: 1 when every edge stays where it was with its relative strength, lower when F blurs, adds
  artefacts or moves content. Thin objects (poles, people) live on their edges; a colour transfer keeps them (~1).
- :func:`pseudo_label_diagnostics`: the kept ratio per class of an SSL round (from its ``summary.json``), the classes
  whose pseudo labels are likely wrong (:func:`label_free_flags`, from M's confidence alone) and, when a labelled
  copy of the target train split is at hand, the precision of the kept pixels, overall, per class, and of the
  flagged against the unflagged classes (which says whether the flags were right).

Nothing here selects a model, a stage or a setting: the figures are written beside each stage
(``<stage>/diagnostics.json``) and into the results table, for the reader. Written by hand: MMSeg's IoUMetric
evaluates a dataloader of one model; these compare two image folders under one model and read pseudo-label files.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.registry import DefaultScope

from .metrics.uda_iou_metric import confusion_matrix, ious_from_confusion


def subset(items: Sequence, num: Optional[int]) -> List:
    """At most ``num`` items, evenly spaced over the sorted sequence (deterministic); all of them if ``num`` is
    None or larger."""
    items = sorted(items)
    if num is None or num >= len(items):
        return list(items)
    if num <= 0:
        return []
    step = len(items) / num
    return [items[int(i * step)] for i in range(num)]


def image_statistics(paths: Sequence[str]) -> Dict[str, List[float]]:
    """Per-channel mean and standard deviation (BGR, 0-255) over every pixel of the images."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f'cannot read image {path}')
        pixels = img.reshape(-1, 3).astype(np.float64)
        total += pixels.sum(0)
        total_sq += (pixels**2).sum(0)
        count += len(pixels)
    if not count:
        raise ValueError('image_statistics: no images')
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0))
    return dict(mean=mean.tolist(), std=std.tolist(), num_images=len(paths))


def statistics_distance(a: Dict[str, List[float]], b: Dict[str, List[float]]) -> float:
    """Mean absolute difference of the per-channel means and standard deviations of two image sets (0-255 units)."""
    diffs = [abs(x - y) for key in ('mean', 'std') for x, y in zip(a[key], b[key])]
    return float(np.mean(diffs))


def _edge_map(img: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    gx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3)
    return np.sqrt(gx**2 + gy**2)


def edge_consistency(source_paths: Sequence[str], translated_paths: Sequence[str]) -> float:
    """Mean over image pairs of the Pearson correlation between the Sobel gradient magnitudes of a source image
    and its translation (the source resized to the translation's size, bilinear; a flat image correlates 0)."""
    if len(source_paths) != len(translated_paths) or not source_paths:
        raise ValueError('edge_consistency: needs as many translated images as source images, at least one')
    values = []
    for src_path, out_path in zip(source_paths, translated_paths):
        src, out = cv2.imread(src_path, cv2.IMREAD_COLOR), cv2.imread(out_path, cv2.IMREAD_COLOR)
        for path, img in ((src_path, src), (out_path, out)):
            if img is None:
                raise OSError(f'cannot read image {path}')
        if src.shape[:2] != out.shape[:2]:
            src = cv2.resize(src, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
        a, b = _edge_map(src).ravel(), _edge_map(out).ravel()
        a, b = a - a.mean(), b - b.mean()
        denom = np.sqrt((a**2).sum() * (b**2).sum())
        values.append(float((a * b).sum() / denom) if denom > 0 else 0.)
    return float(np.mean(values))


def _eval_pipeline(pipeline: Sequence[dict]) -> List[dict]:
    """A training pipeline as an evaluation pipeline: labels loaded after the resize (MMSeg's test order, so the
    prediction comes back at the label's size), random augmentation and packing kept as they are."""
    loaders = [t for t in pipeline if str(t.get('type', '')).endswith('LoadAnnotations')]
    rest = [t for t in pipeline if not str(t.get('type', '')).endswith('LoadAnnotations')]
    pack = [i for i, t in enumerate(rest) if str(t.get('type', '')).startswith('Pack')]
    at = pack[0] if pack else len(rest)
    return rest[:at] + (loaders or [dict(type='LoadAnnotations')]) + rest[at:]


@torch.no_grad()
def segmentation_confusion(segmentor, dataset_cfg, num_classes: int, num_images: Optional[int] = None,
                           img_path: Optional[str] = None) -> np.ndarray:
    """Confusion matrix of a segmentor on a labelled MMSeg dataset config (the first ``num_images`` of an evenly
    spaced subset), through the segmentor's own prediction path (``test_step``: its data preprocessor and
    ``test_cfg``). ``img_path`` replaces the images' folder (``data_prefix.img_path``), e.g. by a translated copy of
    the source with the same file names."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS
    cfg = copy.deepcopy(dataset_cfg)
    cfg['pipeline'] = _eval_pipeline(cfg.get('pipeline') or [])
    if img_path is not None:
        cfg['data_prefix'] = dict(cfg.get('data_prefix') or {}, img_path=img_path)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(cfg)
    conf = np.zeros((num_classes, num_classes), np.int64)
    was_training = segmentor.training
    segmentor.eval()
    try:
        for index in subset(range(len(dataset)), num_images):
            sample = dataset[index]
            result = segmentor.test_step(pseudo_collate([sample]))[0]
            pred = result.pred_sem_seg.data[0]
            label = result.gt_sem_seg.data[0] if 'gt_sem_seg' in result else sample['data_samples'].gt_sem_seg.data[0]
            if pred.shape != label.shape:  # a label of another size than its image (as some in GTA5)
                pred = torch.from_numpy(cv2.resize(pred.cpu().numpy().astype(np.uint8), label.shape[::-1],
                                                   interpolation=cv2.INTER_NEAREST))
            conf += confusion_matrix(pred, label, num_classes)
    finally:
        segmentor.train(was_training)
    return conf


def miou(conf: np.ndarray) -> float:
    """mIoU (%) of a confusion matrix over the classes present in its labels or predictions."""
    ious = ious_from_confusion(conf)
    return float(100 * np.nanmean(ious)) if np.any(~np.isnan(ious)) else float('nan')


def translation_consistency(segmentor, source_cfg, translated_dir: str, num_classes: int,
                            num_images: Optional[int] = 100) -> Dict[str, float]:
    """mIoU (%) of one segmentor (M(k-1), the model F's perceptual loss used) on the source images S and on their
    translations S' (same file names in ``translated_dir``), against the source labels."""
    on_source = miou(segmentation_confusion(segmentor, source_cfg, num_classes, num_images))
    on_translated = miou(segmentation_confusion(segmentor, source_cfg, num_classes, num_images,
                                                img_path=osp.abspath(translated_dir)))
    return dict(miou_on_source=on_source, miou_on_translated=on_translated,
                num_images=min(num_images or 10**12, _dataset_len(source_cfg)))


def _dataset_len(dataset_cfg) -> int:
    from mmseg.registry import DATASETS
    cfg = copy.deepcopy(dataset_cfg)
    cfg['pipeline'] = []
    with DefaultScope.overwrite_default_scope('mmseg'):
        return len(DATASETS.build(cfg))


# label-free warning thresholds, fixed before looking at any precision (not tuned): a class whose median
# confidence is below one half (M's top probability on half of its pixels is under 0.5: it is as likely to be
# something else), or that M predicts on less than 0.1% of the target's pixels (too few to learn from, and the
# class-median rule keeps half of them however unsure M is)
UNSURE_MEDIAN = 0.5
RARE_SHARE = 1e-3
# a later SSL round: a class M now predicts on more than 1.5 times the share of the target it took in the round's
# previous pseudo labels, on which M was trained (fixed before any precision was looked at). After training on its
# own labels M is surer of them, right or wrong, so confidence no longer tells a self-taught class (the 'unsure'
# flag misses it); a class that spreads over pixels its teacher gave to other classes is the suspect.
GROWTH = 1.5


def _shares(summary: dict) -> List[float]:
    predicted = summary.get('predicted_pixels_per_class') or []
    total = summary.get('total_pixels') or sum(p or 0 for p in predicted)
    return [(p or 0) / total if total else 0.0 for p in predicted]


def label_free_flags(summary: dict, classes: Sequence[str], previous: Optional[dict] = None) -> Dict[str, List[str]]:
    """Classes whose pseudo labels are likely wrong, from the pseudo-label stage's ``summary.json`` alone (no
    target labels): ``unsure`` (median confidence below :data:`UNSURE_MEDIAN`), ``rare`` (predicted on less than
    :data:`RARE_SHARE` of the pixels) and, given the ``summary.json`` of the pseudo labels the labelling M was
    trained on (``previous``), ``growing`` (its share of the predicted pixels more than :data:`GROWTH` times the
    share it had there). Classes M never predicts are not listed."""
    medians = summary.get('class_medians') or []
    predicted = summary.get('predicted_pixels_per_class') or []
    now = _shares(summary)
    before = _shares(previous) if previous else None
    flags = {}
    for j, name in enumerate(classes):
        n = predicted[j] if j < len(predicted) else None
        if not n:
            continue
        reasons = []
        median = medians[j] if j < len(medians) else None
        if median is not None and median < UNSURE_MEDIAN:
            reasons.append('unsure')
        if now[j] < RARE_SHARE:
            reasons.append('rare')
        if before is not None and now[j] > GROWTH * (before[j] if j < len(before) else 0.0):
            reasons.append('growing')
        if reasons:
            flags[name] = reasons
    return flags


def pseudo_label_diagnostics(pseudo_label_dir: str, summary: dict, classes: Sequence[str],
                             labelled_target_cfg=None, previous_summary: Optional[dict] = None) -> dict:
    """The kept ratio per class of an SSL round (``summary.json`` of the pseudo-label stage), its label-free flags
    (``previous_summary``: that of the pseudo labels the labelling M trained on, if any) and, with
    ``labelled_target_cfg`` (the target train split with its labels), the precision of the kept pixels: the share
    of kept pixels whose pseudo label equals the true label, overall and per (pseudo-label) class. Labels are
    compared at the pseudo label's size (true labels resized with nearest neighbours)."""
    out = dict(kept_ratio=summary.get('kept_ratio'),
               kept_ratio_per_class={c: r for c, r in zip(classes, summary.get('kept_ratio_per_class') or [])
                                     if r is not None},
               flagged=label_free_flags(summary, classes, previous_summary))
    if labelled_target_cfg is None:
        return out
    from mmseg.registry import DATASETS

    from ..datasets.uda_dataset import pseudo_label_name
    cfg = copy.deepcopy(labelled_target_cfg)
    cfg['pipeline'] = []
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(cfg)
    prefix = (getattr(dataset, 'data_prefix', None) or {}).get('img_path', '') or ''
    num_classes = len(classes)
    correct = np.zeros(num_classes, np.int64)
    kept = np.zeros(num_classes, np.int64)
    label_map = getattr(dataset, 'label_map', None)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        pl_path = osp.join(pseudo_label_dir, pseudo_label_name(info['img_path'], prefix))
        pl = cv2.imread(pl_path, cv2.IMREAD_UNCHANGED)
        gt = cv2.imread(info['seg_map_path'], cv2.IMREAD_UNCHANGED)
        if pl is None or gt is None:
            raise OSError(f'cannot read {pl_path if pl is None else info["seg_map_path"]}')
        if label_map:
            mapped = np.full_like(gt, 255)
            for old, new in label_map.items():
                mapped[gt == old] = new
            gt = mapped
        if gt.shape != pl.shape:
            gt = cv2.resize(gt, pl.shape[::-1], interpolation=cv2.INTER_NEAREST)
        mask = (pl != 255) & (gt != 255)
        pl, gt = pl[mask].astype(np.int64), gt[mask].astype(np.int64)
        kept += np.bincount(pl, minlength=num_classes)[:num_classes]
        correct += np.bincount(pl[pl == gt], minlength=num_classes)[:num_classes]
    out['precision'] = float(100 * correct.sum() / kept.sum()) if kept.sum() else None
    out['precision_per_class'] = {c: float(100 * correct[j] / kept[j]) for j, c in enumerate(classes) if kept[j]}
    flagged = np.array([c in out['flagged'] for c in classes])
    for key, mask in (('precision_flagged', flagged), ('precision_unflagged', ~flagged)):
        out[key] = float(100 * correct[mask].sum() / kept[mask].sum()) if kept[mask].sum() else None
    return out
