# Copyright (c) bdl_mm contributors.
"""The labels BDLSegmentor reads from its batches: value checks that name the file, and the target's pseudo labels
(and their weights) stacked to the target input size."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def check_label_values(data_samples: list, num_classes: int, path_key: str):
    """Labels must be trainIds in [0, num_classes) or 255 (ignore): otherwise name the value and the file.

    A stray value would otherwise surface as an index error (or a device-side assert on GPUs) deep inside the
    cross-entropy.
    """
    for sample in data_samples:
        if 'gt_sem_seg' not in sample:
            continue
        label = sample.gt_sem_seg.data
        bad = (label != 255) & ((label < 0) | (label >= num_classes))
        if bad.any():
            value = int(label[bad][0])
            raise ValueError(f'label value {value} outside [0, {num_classes}) and not 255 (ignore) in '
                             f'{sample.metainfo.get(path_key, "<unknown file>")}')


def stack_pseudo_labels(data_samples: list, shape: torch.Size) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Stacked pseudo labels (N, H, W) and weights (N, H, W) or None; samples without labels are ignored."""
    if not any('gt_sem_seg' in s for s in data_samples):
        return None, None
    h, w = shape
    device = next(s.gt_sem_seg.data.device for s in data_samples if 'gt_sem_seg' in s)
    labels, weights, any_weight = [], [], False
    for s in data_samples:
        if 'gt_sem_seg' in s:
            if tuple(s.gt_sem_seg.data.shape[-2:]) != (h, w):
                raise ValueError(f'BDLSegmentor: target pseudo label of shape {tuple(s.gt_sem_seg.shape)} '
                                 f'does not match the target input size {(h, w)} (pseudo labels must be '
                                 'saved at the size M is run at)')
            lbl = s.gt_sem_seg.data.long().reshape(h, w)
        else:  # a sample without pseudo labels contributes nothing
            lbl = torch.full((h, w), 255, dtype=torch.long, device=device)
        labels.append(lbl)
        if 'pseudo_weight' in s:
            any_weight = True
            wt = s.pseudo_weight.data.float()[0]
            # the preprocessor pads labels (bottom/right) to the batch shape but not weights: pad alike
            wt = F.pad(wt, (0, w - wt.shape[-1], 0, h - wt.shape[-2]), value=0.)
        else:
            wt = torch.ones((h, w), device=device)
        weights.append(wt)
    return torch.stack(labels), (torch.stack(weights) if any_weight else None)
