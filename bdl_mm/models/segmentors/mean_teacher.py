# Copyright (c) bdl_mm contributors.
"""Online pseudo labels from a mean teacher (DACS, Tranheden et al., WACV 2021; DAFormer, Hoyer et al., CVPR 2022).

Not in BDL's release: a switch of the project (``BDLSegmentor(mean_teacher=dict(momentum, confidence))``,
docs/fidelity.md). The teacher is mmengine's :class:`~mmengine.model.ExponentialMovingAverage` of M's weights
(reused, not rewritten); what is written here is DACS's labelling rule, which none of the installed packages has:
every pixel gets the teacher's most likely class, and each image's pixels are weighted by the fraction of its
pixels whose teacher confidence reaches ``confidence`` (DACS: 0.968), so an image the teacher is unsure of weighs
little as a whole instead of being cut class by class.
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import ExponentialMovingAverage
from torch import Tensor


def check_confidence(confidence: float) -> float:
    """DACS's confidence must be a probability above 0 (at 0 every pixel would count as confident)."""
    if not 0. < confidence <= 1.:
        raise ValueError(f'BDLSegmentor: mean_teacher.confidence must be in (0, 1], got {confidence}')
    return confidence


def build_teacher(segmentor: nn.Module, mean_teacher: Optional[dict]) -> Tuple[Optional[nn.Module], Optional[float]]:
    """``(teacher, confidence)`` of ``BDLSegmentor(mean_teacher=...)``: mmengine's EMA of ``segmentor`` and the
    confidence of DACS's rule, or ``(None, None)`` without the switch; bad settings are refused."""
    if mean_teacher is None:
        return None, None
    unknown = sorted(set(mean_teacher) - {'momentum', 'confidence'})
    if unknown:
        raise ValueError(f'BDLSegmentor: mean_teacher takes momentum and confidence, got {unknown}')
    momentum = float(mean_teacher.get('momentum', 0.01))
    if not 0. < momentum < 1.:
        raise ValueError(f'BDLSegmentor: mean_teacher.momentum must be in (0, 1) (the weight of M in each update, '
                         f'DACS: 0.01), got {momentum}')
    confidence = check_confidence(float(mean_teacher.get('confidence', 0.968)))
    return ExponentialMovingAverage(segmentor, momentum=momentum), confidence


def teacher_labels(teacher: nn.Module, tgt: dict, shape: torch.Size, confidence: float,
                   upsample: Callable) -> Tuple[Tensor, Tensor]:
    """The teacher's pseudo labels and weights of a preprocessed target batch (eval mode, no gradient, logits
    upsampled to ``shape`` by ``upsample``); samples without pseudo labels, and padding, stay ignored (255)."""
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            logits = upsample(teacher(tgt['inputs'], None, mode='tensor'), shape)
    finally:
        teacher.train(was_training)
    valid = torch.zeros((len(tgt['data_samples']), *shape), dtype=torch.bool, device=logits.device)
    for j, sample in enumerate(tgt['data_samples']):
        if 'gt_sem_seg' in sample:
            h, w = sample.metainfo.get('img_shape', shape)[:2]
            valid[j, :h, :w] = True
    return teacher_pseudo_labels(logits, confidence, valid)


def teacher_pseudo_labels(logits: Tensor, confidence: float,
                          valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """DACS's pseudo labels and weights from a teacher's logits.

    Args:
        logits: ``(N, C, H, W)`` the teacher's logits at the label size.
        confidence: a pixel counts as confident when its largest softmax probability is at least this.
        valid: ``(N, H, W)`` bool, the pixels that hold image content (False on padding; None: all). Padding is
            labelled 255 (ignored) and left out of the fraction.

    Returns:
        ``(labels, weights)``: ``(N, H, W)`` long labels (255 outside ``valid``) and ``(N, H, W)`` float weights,
        each image's fraction of confident valid pixels at every one of its pixels.
    """
    check_confidence(confidence)
    prob, labels = F.softmax(logits.float(), dim=1).max(dim=1)
    if valid is None:
        valid = torch.ones_like(labels, dtype=torch.bool)
    confident = (prob >= confidence) & valid
    fraction = confident.flatten(1).sum(1).float() / valid.flatten(1).sum(1).clamp(min=1).float()
    weights = fraction.view(-1, 1, 1).expand_as(prob).clone()
    labels = labels.masked_fill(~valid, 255)
    return labels, weights
