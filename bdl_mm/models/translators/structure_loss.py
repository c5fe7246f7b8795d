# Copyright (c) bdl_mm contributors.
"""An F that keeps its input's edges: the structure loss, a switch of ``PerceptualCycleGAN`` (off in the release).

Neither the paper nor the release has it; neither MMagic nor MMSeg has an edge-consistency loss, so it is written
here. On the toy's ``texture_layout`` shift the release's F moves the horizon and draws buildings into the sky
(the target's layout), so S' no longer lines up with the source labels M is trained on. The label-free diagnostic
``edge_consistency`` (``bdl_mm.evaluation.stage_diagnostics``: the correlation of the Sobel gradient magnitudes of
an image and its translation) falls to 0.3 there. This loss is one minus that correlation, per image, on the
luminance average-pooled by ``scale``, so fine textures, which F may add or remove, average out, while object
outlines and the horizon stay::

    loss_struct_d = weight * mean_i (1 - corr(edges(x_d,i), edges(G_e(x_d,i))))

The correlation is blind to the edges' contrast (a fog or a palette changes it), not to where they are.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

STRUCTURE_KEYS = ('weight', 'scale')
_SOBEL_X = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])


def parse_structure_loss(cfg: Optional[dict]) -> Tuple[float, int]:
    """``structure_loss`` of the model config as ``(weight, scale)``; ``None`` is off (weight 0)."""
    if cfg is None:
        return 0., 1
    unknown = set(cfg) - set(STRUCTURE_KEYS)
    if unknown or 'weight' not in cfg:
        raise ValueError(f'structure_loss must be dict(weight=..., scale=4), got keys {sorted(cfg)}')
    weight, scale = float(cfg['weight']), cfg.get('scale', 4)
    if weight < 0 or not isinstance(scale, int) or scale < 1:
        raise ValueError(f'structure_loss needs weight >= 0 and an integer scale >= 1, got {weight} and {scale!r}')
    return weight, scale


def edge_magnitude(img: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """Sobel gradient magnitude (N, 1, h, w) of the channel mean of ``img`` (N, C, H, W), average-pooled by
    ``scale`` first (``ceil_mode``: a border smaller than ``scale`` is kept)."""
    grey = img.mean(1, keepdim=True)
    if scale > 1:
        grey = F.avg_pool2d(grey, scale, ceil_mode=True)
    kernel = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1).to(grey)
    grad = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode='replicate'), kernel)
    return grad.pow(2).sum(1, keepdim=True).add(1e-12).sqrt()


def edge_correlation_loss(fake: torch.Tensor, real: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """Mean over the batch of 1 - the Pearson correlation of the edge magnitudes of ``fake`` and ``real`` (the
    target, taken as a constant). 0 when the edges are where they were, whatever their contrast; 1 when unrelated;
    an image without edges correlates 0, as in the diagnostic."""
    a = edge_magnitude(fake, scale).flatten(1)
    with torch.no_grad():
        b = edge_magnitude(real, scale).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.pow(2).sum(1) * b.pow(2).sum(1)).add(1e-12).sqrt()
    return (1 - corr).mean()


def structure_losses(outputs: dict, domains: Sequence[str], opposite: Callable[[str], str], weight: float,
                     scale: int) -> Dict[str, torch.Tensor]:
    """``loss_struct_<d>`` of every domain ``d``: the translation of ``real_<d>`` against ``real_<d>``."""
    if weight == 0:
        return {}
    return {f'loss_struct_{d}': weight * edge_correlation_loss(outputs[f'fake_{opposite(d)}'], outputs[f'real_{d}'],
                                                               scale)
            for d in domains}
