# Copyright (c) bdl_mm contributors.
"""ClassMix of a labelled source batch into a pseudo-labelled target batch (DACS, Tranheden et al., WACV 2021).

Not in BDL's release: a switch of the project's robust recipe (``BDLSegmentor(class_mix=True)``,
docs/fidelity.md). Written by hand: MMSeg has no mixing of two domains' batches. Per image, a crop of the source
image of the target's size is taken at a random place, half of the classes present in the crop's labels (rounded
up, as DACS) are drawn at random, and their pixels, image and label, are pasted onto the target image and its
pseudo labels. The mixed images then train M with the mixed labels: the pasted pixels carry true labels of classes
that self-training alone would let shrink.

``choice='inverse_area'`` (a switch of this project, in neither DACS nor the release) draws the half without
replacement with each class's probability proportional to one over its pixel count in the crop, so that small
classes (person, pole, a distant car), the ones self-training loses first, are pasted more often than road or sky,
whose pseudo labels are the most precise. In the spirit of DAFormer's rare-class sampling (Hoyer et al., CVPR 2022),
which samples whole source images instead.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

IGNORE_INDEX = 255
CHOICES = ('uniform', 'inverse_area')


def check_choice(choice: str) -> str:
    """``choice`` if it is one of :data:`CHOICES`, else a ValueError naming them."""
    if choice not in CHOICES:
        raise ValueError(f'class_mix: choice must be one of {CHOICES}, got {choice!r}')
    return choice


def class_mix(src_img: Tensor, src_label: Tensor, tgt_img: Tensor, tgt_label: Tensor,
              tgt_weight: Optional[Tensor] = None,
              choice: str = 'uniform') -> Tuple[Tensor, Tensor, Optional[Tensor], Tensor]:
    """Paste half of each source crop's classes onto the target images.

    Args:
        src_img: ``(N, C, Hs, Ws)`` source images (already normalised, as the target's).
        src_label: ``(N, Hs, Ws)`` source labels (255 = ignored, never pasted).
        tgt_img: ``(N, C, H, W)`` target images, ``H <= Hs`` and ``W <= Ws``.
        tgt_label: ``(N, H, W)`` target pseudo labels.
        tgt_weight: ``(N, H, W)`` pseudo-label weights or None; pasted pixels get weight 1.
        choice: how the half is drawn: ``'uniform'`` (DACS) or ``'inverse_area'`` (smaller classes first).

    Returns:
        ``(images, labels, weights, mask)``: the mixed batch, its labels, its weights (None if ``tgt_weight`` is
        None) and the ``(N, H, W)`` bool mask of the pasted pixels. Draws from torch's global random generator.
    """
    check_choice(choice)
    n, _, h, w = tgt_img.shape
    hs, ws = src_img.shape[-2:]
    if src_img.shape[0] != n or src_label.shape[0] != n:
        raise ValueError(f'class_mix: {src_img.shape[0]} source images for {n} target images')
    if hs < h or ws < w:
        raise ValueError(f'class_mix: the source images ({hs}x{ws}) must be at least as large as the target '
                         f'images ({h}x{w}) to crop them')
    images, labels = tgt_img.clone(), tgt_label.clone()
    weights = None if tgt_weight is None else tgt_weight.clone()
    mask = torch.zeros((n, h, w), dtype=torch.bool, device=tgt_img.device)
    for j in range(n):
        y = int(torch.randint(0, hs - h + 1, (1, )))
        x = int(torch.randint(0, ws - w + 1, (1, )))
        crop_img, crop_label = src_img[j, :, y:y + h, x:x + w], src_label[j, y:y + h, x:x + w]
        classes, counts = crop_label.unique(return_counts=True)
        counts = counts[classes != IGNORE_INDEX]
        classes = classes[classes != IGNORE_INDEX]
        k = (len(classes) + 1) // 2
        if choice == 'uniform' or not k:
            chosen = classes[torch.randperm(len(classes))[:k].to(classes.device)]
        else:
            chosen = classes[torch.multinomial(1. / counts.double().cpu(), k, replacement=False).to(classes.device)]
        mask[j] = torch.isin(crop_label, chosen)
        images[j][:, mask[j]] = crop_img[:, mask[j]]
        labels[j][mask[j]] = crop_label[mask[j]].to(labels.dtype)
        if weights is not None:
            weights[j][mask[j]] = 1.
    return images, labels, weights, mask
