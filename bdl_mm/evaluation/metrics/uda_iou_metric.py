"""mIoU of the paper's tables: per-class IoU in Cityscapes trainId order (the papers' column order), mIoU over all
classes (mIoU19 for GTA5 -> Cityscapes) and over the 16 / 13 classes of the SYNTHIA tables."""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import METRICS
from prettytable import PrettyTable

# Cityscapes trainIds of the SYNTHIA tables: 16 classes (no terrain, truck, train), 13 (also no wall, fence, pole)
MIOU16_CLASSES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
MIOU13_CLASSES = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
DEFAULT_CLASS_SUBSETS = {'mIoU16': MIOU16_CLASSES, 'mIoU13': MIOU13_CLASSES}


def confusion_matrix(pred, label, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``conf[g, p]`` = number of pixels with label ``g`` predicted as ``p``; labels equal to ``ignore_index`` (or
    outside ``[0, num_classes)``) are left out. ``pred`` and ``label`` are arrays or tensors of the same shape."""
    pred = torch.as_tensor(pred).reshape(-1).long().cpu()
    label = torch.as_tensor(label).reshape(-1).long().cpu()
    keep = (label != ignore_index) & (label >= 0) & (label < num_classes)
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f'predictions must lie in [0, {num_classes}), got [{int(pred.min())}, {int(pred.max())}]')
    index = label[keep] * num_classes + pred[keep]
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes).numpy()


def ious_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN) of a confusion matrix (rows: labels, columns: predictions); NaN for a
    class that occurs neither in the labels nor in the predictions. Same definition as cityscapesscripts."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def summarize_ious(ious: np.ndarray, class_subsets: Optional[Dict[str, Sequence[int]]] = None) -> Dict[str, float]:
    """``mIoU`` (all classes) and one mean per subset of class indices, as fractions; NaN classes are skipped."""
    ious = np.asarray(ious, dtype=np.float64)
    out = OrderedDict(mIoU=float(np.nanmean(ious)) if np.any(~np.isnan(ious)) else float('nan'))
    for name, indices in (class_subsets or {}).items():
        indices = list(indices)
        if max(indices) >= len(ious):
            raise ValueError(f'class subset {name} uses class {max(indices)} but there are {len(ious)} classes')
        sub = ious[indices]
        out[name] = float(np.nanmean(sub)) if np.any(~np.isnan(sub)) else float('nan')
    return out


@METRICS.register_module()
class UDAIoUMetric(IoUMetric):
    """:class:`IoUMetric` reporting the numbers of the BDL tables.

    Per sample it accumulates a ``num_classes x num_classes`` confusion matrix between ``pred_sem_seg`` and
    ``gt_sem_seg``. The test pipeline keeps the label at full resolution (``LoadAnnotations`` after ``Resize``) and
    MMSeg's segmentor upsamples the logits to ``ori_shape``, so predictions are compared at the label's full
    resolution, as in the release (a prediction of another size is an error naming the label file).

    Metric keys: ``aAcc``, ``mIoU`` (all classes of the dataset), ``mAcc``, one key per class subset (default
    ``mIoU16``, ``mIoU13``) and ``IoU.<class>`` per class, in percent. A table in class (= paper column) order is
    logged together with one tab-separated row to paste into the paper's tables.

    Args:
        class_subsets (dict, optional): name -> class indices averaged in addition to all classes. Defaults to
            ``{'mIoU16': MIOU16_CLASSES, 'mIoU13': MIOU13_CLASSES}``.
        decimals (int, optional): Rounding of the reported percentages; None keeps full precision. Defaults to 2.
        **kwargs: As :class:`IoUMetric` (``ignore_index``, ``output_dir``, ``format_only``, ``prefix`` ...).
    """

    def __init__(self,
                 class_subsets: Optional[Dict[str, Sequence[int]]] = None,
                 decimals: Optional[int] = 2,
                 **kwargs) -> None:
        kwargs.setdefault('iou_metrics', ['mIoU'])
        super().__init__(**kwargs)
        self.class_subsets = dict(DEFAULT_CLASS_SUBSETS if class_subsets is None else class_subsets)
        self.decimals = decimals

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Accumulate the confusion matrix of each sample (and write predictions like IoUMetric if asked)."""
        if self.format_only or self.output_dir is not None:
            format_only, self.format_only = self.format_only, True
            super().process(data_batch, data_samples)  # writes the PNGs, accumulates nothing
            self.format_only = format_only
            if format_only:
                return
        num_classes = len(self.dataset_meta['classes'])
        for data_sample in data_samples:
            pred = data_sample['pred_sem_seg']['data'].squeeze()
            label = data_sample['gt_sem_seg']['data'].squeeze().to(pred)
            if pred.shape != label.shape:
                raise ValueError(f'prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in size for '
                                 f'{data_sample.get("seg_map_path", data_sample.get("img_path"))}')
            self.results.append(confusion_matrix(pred, label, num_classes, self.ignore_index))

    def _percent(self, value):
        value = float(value) * 100
        return value if self.decimals is None else round(value, self.decimals)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        logger: MMLogger = MMLogger.get_current_instance()
        if self.format_only:
            logger.info(f'results are saved to {self.output_dir}')
            return OrderedDict()
        conf = np.sum(results, axis=0)
        class_names = self.dataset_meta['classes']
        ious = ious_from_confusion(conf)
        with np.errstate(divide='ignore', invalid='ignore'):
            accs = np.diag(conf) / conf.sum(1)
        metrics = OrderedDict(aAcc=self._percent(np.diag(conf).sum() / max(conf.sum(), 1)))
        for key, value in summarize_ious(ious, self.class_subsets).items():
            metrics[key] = self._percent(value)
        metrics['mAcc'] = self._percent(np.nanmean(accs)) if np.any(~np.isnan(accs)) else float('nan')
        for name, iou in zip(class_names, ious):
            metrics[f'IoU.{name}'] = self._percent(iou)

        table = PrettyTable()
        table.add_column('Class', list(class_names))
        table.add_column('IoU', [self._percent(v) for v in ious])
        table.add_column('Acc', [self._percent(v) for v in accs])
        for name, indices in self.class_subsets.items():
            table.add_column(f'in {name}', ['x' if i in set(indices) else '' for i in range(len(class_names))])
        print_log('per class results:', logger)
        print_log('\n' + table.get_string(), logger=logger)
        summary = ' '.join(f'{k} {metrics[k]}' for k in ['mIoU', *self.class_subsets])
        row = '\t'.join(f'{self._percent(v):.1f}' for v in ious)
        print_log(f'{summary}\npaper row ({", ".join(class_names)}):\n{row}', logger=logger)
        return metrics
