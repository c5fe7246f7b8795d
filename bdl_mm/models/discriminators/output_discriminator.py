# Copyright (c) bdl_mm contributors.
import torch.nn as nn
from mmengine.model import BaseModule
from mmseg.registry import MODELS


def check_num_classes(discriminator_in_channels, segmentor_num_classes):
    """Raise ``ValueError`` naming both numbers unless D_M's input channels equal M's output channels.

    D_M takes the softmax of M's logits, so a segmentor wrapper (``BDLSegmentor``) calls this with
    ``discriminator.in_channels`` and ``segmentor.decode_head.out_channels`` before training starts.
    """
    if discriminator_in_channels != segmentor_num_classes:
        raise ValueError(f'OutputDiscriminator in_channels={discriminator_in_channels} does not match the '
                         f'segmentor\'s {segmentor_num_classes} output classes: D_M reads the softmax of M\'s '
                         f'logits, set discriminator.in_channels={segmentor_num_classes}')


@MODELS.register_module()
class OutputDiscriminator(BaseModule):
    """Output-space discriminator D_M of BDL (the release's ``FCDiscriminator``, after AdaptSegNet).

    Five 4x4 convs with stride 2 and padding 1, channels ``base_channels * (1, 2, 4, 8)`` then 1, each but
    the last followed by LeakyReLU(0.2). Input: the softmax of M's logits, ``in_channels`` = number of
    classes; output: one logit per 32x32 input patch (BCE-with-logits is computed by the caller). Module
    names are the release's (``conv1`` ... ``conv4``, ``classifier``), so its ``*_D.pth`` files load after
    ``tools/model_converters/bdl_release.py``. Initialisation: PyTorch's default, like the release.

    Args:
        in_channels (int): Number of classes of M (19 for Cityscapes).
        base_channels (int): Width of the first conv. Default: 64.
        negative_slope (float): LeakyReLU slope. Default: 0.2.
        init_cfg (dict | list[dict], optional): Default: None.
    """

    def __init__(self, in_channels, base_channels=64, negative_slope=0.2, init_cfg=None):
        super().__init__(init_cfg)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'OutputDiscriminator in_channels must be the number of classes (int >= 1), '
                             f'got {in_channels!r}')
        self.in_channels = in_channels
        self.base_channels = base_channels
        widths = [in_channels] + [base_channels * m for m in (1, 2, 4, 8)]
        for i in range(4):
            self.add_module(f'conv{i + 1}', nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1))
        self.classifier = nn.Conv2d(widths[4], 1, 4, stride=2, padding=1)
        self.leaky_relu = nn.LeakyReLU(negative_slope=negative_slope, inplace=True)

    def forward(self, x):
        """Map class probabilities ``(N, in_channels, H, W)`` to patch logits ``(N, 1, H/32, W/32)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'OutputDiscriminator expects (N, {self.in_channels}, H, W) class probabilities, '
                             f'got shape {tuple(x.shape)}')
        for i in range(1, 5):
            x = self.leaky_relu(getattr(self, f'conv{i}')(x))
        return self.classifier(x)
