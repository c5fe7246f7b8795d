# Copyright (c) bdl_mm contributors.
"""Pure functions of the SSL step (BDL Sec. 3.2, 4.3): confidence quantisation, per-class confidence
histograms, exact class medians from the histograms, and pseudo labels / masks / weights for the three modes.

Nothing here touches a model or a file, so every function can be checked against a numpy computation.

Confidence = maximum softmax probability of a pixel; prediction = its argmax. Both passes of the pipeline
work on the confidence quantised to ``1 / CONF_LEVELS`` (uint16), so the per-class histograms with one bin per
quantisation level are exact: the median taken from them is the exact ``numpy.median`` of the quantised
confidences, which differs from the median of the float confidences by at most ``0.5 / CONF_LEVELS`` (7.6e-6).
The release's own statistic, ``sorted[round(n / 2)]``, is exact for the quantised confidences too
(:func:`release_median_from_histogram`, ``median='release'``).

Tie rules (kept = pixel keeps its argmax label, else 255):

- ``global`` (paper, "max probability threshold"): kept if ``conf > threshold`` (the paper's indicator
  ``1[max M(I_T) > threshold]``).
- ``class_median`` (authors' release, ``SSL.py``): ``threshold_c = min(median_c, threshold)`` and a pixel
  predicted as ``c`` is dropped if ``conf < threshold_c`` (``label[(prob < thres[c]) * (label == c)] = 255``),
  i.e. kept if ``conf >= threshold_c``. ``median='release'`` takes the release's ``sorted[round(n / 2)]``;
  ``median='numpy'`` numpy's (mean of the two middle values for an even count), at most one sample away.
  A class that is never predicted gets no threshold (``nan`` here, ``null`` in the summary) and no pixels.
  ``floor`` (a switch of this project, off in the release's configs) raises every class threshold to at least it.
  ``portion`` (a switch of this project, off in the release's configs: class-balanced selection as in CBST, Zou et
  al. 2018) replaces the median by the confidence above which the top ``portion`` of the class's pixels lie, the
  sample at sorted index ``min(round(n * (1 - portion)), n - 1)``; ``portion=0.5`` is the release's median.
- ``soft`` (paper Table 3): every pixel keeps its argmax label and is weighted by its confidence.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

MODES = ('global', 'class_median', 'soft')
CONF_LEVELS = 65535  # confidence q / CONF_LEVELS with q in [0, CONF_LEVELS] (uint16)
IGNORE_INDEX = 255


def quantize_confidence(conf: np.ndarray) -> np.ndarray:
    """Quantise confidences in [0, 1] to uint16 levels ``round(conf * CONF_LEVELS)``."""
    conf = np.asarray(conf, dtype=np.float64)
    return np.clip(np.rint(conf * CONF_LEVELS), 0, CONF_LEVELS).astype(np.uint16)


def dequantize_confidence(conf_q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_confidence` (float64)."""
    return np.asarray(conf_q, dtype=np.float64) / CONF_LEVELS


def bin_values() -> np.ndarray:
    """Confidence value of every histogram bin (float64, ``CONF_LEVELS + 1`` bins)."""
    return dequantize_confidence(np.arange(CONF_LEVELS + 1))


def empty_histogram(num_classes: int) -> np.ndarray:
    """Zero per-class confidence histogram, shape ``(num_classes, CONF_LEVELS + 1)``, int64."""
    return np.zeros((num_classes, CONF_LEVELS + 1), dtype=np.int64)


def accumulate_histogram(hist: np.ndarray, label: np.ndarray, conf_q: np.ndarray) -> np.ndarray:
    """Add the pixels of one prediction to ``hist`` in place and return it.

    Args:
        hist: ``(C, CONF_LEVELS + 1)`` int64 histogram.
        label: argmax prediction (any int dtype, values in [0, C)).
        conf_q: quantised confidence (uint16), same shape as ``label``.
    """
    num_classes, levels = hist.shape
    label = np.asarray(label).ravel().astype(np.int64)
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f'prediction holds class {int(label.max())} but the histogram has {num_classes} classes')
    flat = label * levels + np.asarray(conf_q).ravel().astype(np.int64)
    hist += np.bincount(flat, minlength=num_classes * levels).reshape(num_classes, levels)
    return hist


def _order_statistics(hist: np.ndarray, index) -> np.ndarray:
    """Per class, the mean of the quantised values of the samples at the 0-based sorted positions ``index(n)``
    (a tuple of positions, n = the class's count); ``nan`` for an empty class."""
    values = dequantize_confidence(np.arange(hist.shape[1]))
    out = np.full(hist.shape[0], np.nan)
    for c, row in enumerate(hist):
        n = int(row.sum())
        if n:
            cum = np.cumsum(row)
            # value of the k-th smallest sample = first bin whose cumulative count exceeds k
            out[c] = np.mean([values[np.searchsorted(cum, k + 1)] for k in index(n)])
    return out


def median_from_histogram(hist: np.ndarray) -> np.ndarray:
    """Per-class median confidence from a ``(C, L)`` histogram, ``numpy.median`` definition; ``nan`` if empty."""
    return _order_statistics(hist, lambda n: ((n - 1) // 2, n // 2))


def portion_from_histogram(hist: np.ndarray, portion: float) -> np.ndarray:
    """Per class, the confidence above which the top ``portion`` of its pixels lie: the sample at sorted index
    ``min(round(n * (1 - portion)), n - 1)``, numpy's rounding as the release's ``SSL.py``; ``nan`` if empty."""
    if not 0.0 < float(portion) <= 1.0:
        raise ValueError(f'portion must be in (0, 1], got {portion}')
    return _order_statistics(hist, lambda n: (min(int(np.round(n * (1.0 - portion))), n - 1), ))


def release_median_from_histogram(hist: np.ndarray) -> np.ndarray:
    """Per-class "median" as the release's ``SSL.py`` takes it: ``np.sort(x)[np.int(np.round(len(x) * 0.5))]``,
    the sample at index ``round(n / 2)`` (numpy rounds half to even: n = 3 gives index 2, the largest of three);
    ``nan`` if empty. It is the top half's least confidence: :func:`portion_from_histogram` at 0.5."""
    return portion_from_histogram(hist, 0.5)


MEDIANS = dict(release=release_median_from_histogram, numpy=median_from_histogram)


def class_median_thresholds(hist: np.ndarray, threshold: float = 0.9, median: str = 'numpy',
                            floor: Optional[float] = None, portion: Optional[float] = None) -> np.ndarray:
    """Release thresholds ``min(median_c, threshold)``; ``nan`` for a class that is never predicted.
    ``median``: ``'release'`` (``sorted[round(n / 2)]``, the authors' ``SSL.py``) or ``'numpy'``
    (``numpy.median``). ``floor`` (not in the release, off by default): no class threshold below it,
    ``max(min(median_c, threshold), floor)``, so a class M is unsure of keeps only its pixels above the floor
    instead of half of them. ``portion`` (not in the release, off by default): the class statistic is the
    confidence of the top ``portion`` of the class's pixels (:func:`portion_from_histogram`) instead of the
    median, ``max(min(top_portion_c, threshold), floor)``."""
    if median not in MEDIANS:
        raise ValueError(f"median must be one of {sorted(MEDIANS)}, got {median!r}")
    statistic = MEDIANS[median](hist) if portion is None else portion_from_histogram(hist, portion)
    thresholds = np.minimum(statistic, threshold)  # nan stays nan
    if floor is not None:
        thresholds = np.where(np.isnan(thresholds), thresholds, np.maximum(thresholds, floor))
    return thresholds


def pseudo_label(label: np.ndarray,
                 conf: np.ndarray,
                 mode: str,
                 threshold: float = 0.9,
                 class_thresholds: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Pseudo label (uint8, 255 = ignored) and, in soft mode, the per-pixel weight for one prediction.

    Args:
        label: argmax prediction, ``(H, W)`` int.
        conf: max probability, ``(H, W)`` float (the pipeline passes dequantised confidences).
        mode: ``'global'``, ``'class_median'`` or ``'soft'``.
        threshold: the global threshold (``global``); ignored otherwise.
        class_thresholds: per-class thresholds (``class_median``), ``nan`` = class has no threshold.

    Returns:
        ``(pseudo_label, weight)``: ``weight`` is ``conf`` (float) in soft mode and ``None`` otherwise.
    """
    label = np.asarray(label)
    conf = np.asarray(conf)
    if mode == 'global':
        keep = conf > threshold
    elif mode == 'class_median':
        if class_thresholds is None:
            raise ValueError('class_median mode needs class_thresholds')
        thr = np.asarray(class_thresholds, dtype=np.float64)
        if label.size and label.max() >= len(thr):
            raise ValueError(f'prediction holds class {int(label.max())} but only {len(thr)} thresholds are given')
        keep = conf >= thr[label]  # nan (never-predicted class) compares False: dropped
    elif mode == 'soft':
        return label.astype(np.uint8), conf
    else:
        raise ValueError(f'unknown pseudo-label mode {mode!r}; expected one of {MODES}')
    return np.where(keep, label, IGNORE_INDEX).astype(np.uint8), None


def weight_to_uint8(weight: np.ndarray) -> np.ndarray:
    """Soft-mode weight map as stored on disk: ``round(255 * max prob)`` (uint8)."""
    return np.clip(np.rint(np.asarray(weight, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def kept_pixels_from_histogram(hist: np.ndarray,
                               mode: str,
                               threshold: float = 0.9,
                               class_thresholds: Optional[Sequence[float]] = None) -> np.ndarray:
    """Pixels kept per class (int64, ``(C,)``) with exactly the rules of :func:`pseudo_label`."""
    values = dequantize_confidence(np.arange(hist.shape[1]))
    if mode == 'soft':
        return hist.sum(1)
    if mode == 'global':
        return hist[:, values > threshold].sum(1)
    if mode == 'class_median':
        thr = np.asarray(class_thresholds, dtype=np.float64)
        return np.array([hist[c, values >= t].sum() if np.isfinite(t) else 0 for c, t in enumerate(thr)],
                        dtype=np.int64)
    raise ValueError(f'unknown pseudo-label mode {mode!r}; expected one of {MODES}')


def threshold_study(hist: np.ndarray, thresholds: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Paper Fig. 5: fraction of all pixels with ``conf > t`` for each threshold ``t`` (default 0.50..0.99)."""
    if thresholds is None:
        thresholds = np.round(np.arange(50, 100) / 100, 2)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    values = dequantize_confidence(np.arange(hist.shape[1]))
    total_per_bin = hist.sum(0)
    total = max(int(total_per_bin.sum()), 1)
    ratios = np.array([total_per_bin[values > t].sum() / total for t in thresholds])
    return thresholds, ratios
