# Copyright (c) bdl_mm contributors.
import torch.nn as nn
from mmengine.model import BaseModule
from mmseg.registry import MODELS


@MODELS.register_module()
class VGG16FCN(BaseModule):
    """VGG16 trunk of FCN-8s as used by BDL (the release's ``model/fcn8s.py``, after caffe's FCN).

    ``conv1_1`` pads by 100 pixels, five VGG blocks of 3x3 convs (2, 2, 3, 3, 3 convs) each end with a 2x2
    stride-2 max-pool in ceil mode, then ``fc6`` (7x7 conv, 4096 channels, no padding) and ``fc7``
    (1x1 conv, 4096), each followed by ReLU and ``Dropout2d`` (the release's dropout). No BatchNorm.
    Module names are the release's (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``), so its checkpoints
    convert 1:1 by adding ``backbone.``. MMSeg has no VGG backbone, and mmcv's ``VGG`` has different
    names, no padding 100 and no convolutional fc6/fc7, hence this module.

    Outputs ``(img, pool3, pool4, fc7)``: the network input itself comes first (the same tensor, no copy)
    because :class:`FCN8sHead` crops its output to the input size (release: ``h[:, :, 31:31 + H, 31:31 + W]``)
    and the input is the only source of that size available in every code path of a decode head
    (``EncoderDecoder.loss/predict/_forward``, or a caller of ``decode_head.forward``): MMSeg 1.2.2's
    ``SegDataPreProcessor`` sets no ``batch_input_shape``, and at test time without padding no
    ``pad_shape`` either.

    Args:
        in_channels (int): Input image channels. Default: 3.
        base_channels (int): Width of block 1; blocks 1-5 have (1, 2, 4, 8, 8) times this. Default: 64.
        fc_channels (int): Width of fc6 and fc7. Default: 4096.
        conv1_padding (int): Padding of conv1_1. Default: 100 (release).
        dropout_ratio (float): Dropout2d probability after fc6 and fc7. Default: 0.5 (release).
        init_cfg (dict | list[dict], optional): Default: Kaiming (fan_out, ReLU) for every conv, zero bias.
            The release sets all conv weights to zero and then loads its ImageNet initialisation; a zero
            trunk cannot learn, so without pretrained weights a trainable initialisation is used instead.
    """

    stage_convs = (2, 2, 3, 3, 3)
    stage_widths = (1, 2, 4, 8, 8)

    def __init__(self,
                 in_channels=3,
                 base_channels=64,
                 fc_channels=4096,
                 conv1_padding=100,
                 dropout_ratio=0.5,
                 init_cfg=None):
        if init_cfg is None:
            init_cfg = dict(type='Kaiming', layer='Conv2d', bias=0)
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.fc_channels = fc_channels
        self.out_channels = (in_channels, base_channels * self.stage_widths[2], base_channels * self.stage_widths[3],
                             fc_channels)
        channels = in_channels
        for stage, (num_convs, width) in enumerate(zip(self.stage_convs, self.stage_widths), start=1):
            for i in range(1, num_convs + 1):
                padding = conv1_padding if (stage, i) == (1, 1) else 1
                self.add_module(f'conv{stage}_{i}', nn.Conv2d(channels, base_channels * width, 3, padding=padding))
                self.add_module(f'relu{stage}_{i}', nn.ReLU(inplace=True))
                channels = base_channels * width
            self.add_module(f'pool{stage}', nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.fc6 = nn.Conv2d(channels, fc_channels, 7)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout2d(dropout_ratio)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout2d(dropout_ratio)

    def forward(self, x):
        """Return ``(x, pool3, pool4, fc7)`` (strides 1, 8, 16 and 32 with respect to the padded input)."""
        img = x
        pools = {}
        for stage, num_convs in enumerate(self.stage_convs, start=1):
            for i in range(1, num_convs + 1):
                x = getattr(self, f'relu{stage}_{i}')(getattr(self, f'conv{stage}_{i}')(x))
            x = getattr(self, f'pool{stage}')(x)
            pools[stage] = x
        x = self.drop6(self.relu6(self.fc6(x)))
        x = self.drop7(self.relu7(self.fc7(x)))
        return img, pools[3], pools[4], x
