# Copyright (c) bdl_mm contributors.
import torch.nn as nn
from mmseg.models.backbones.resnet import ResNet
from mmseg.registry import MODELS


@MODELS.register_module()
class DeepLabV2ResNet(ResNet):
    """ResNet backbone of DeepLabV2 as used by BDL (the segmentation adaptation model M).

    The layout of the authors' release (``model/deeplab.py``), expressed with MMSeg's ``ResNet``:

    - caffe style: the stride sits on the first 1x1 conv of a block (``style='caffe'``);
    - stage strides ``(1, 2, 1, 1)`` and dilations ``(1, 1, 2, 4)``: output stride 8;
    - stem: 7x7 conv stride 2, BN, ReLU, then a 3x3 stride-2 max-pool with ``ceil_mode=True``
      (the only part MMSeg's ``ResNet`` cannot express, see :meth:`_make_stem_layer`);
    - every BatchNorm frozen: ``norm_cfg=dict(type='BN', requires_grad=False)`` and ``norm_eval=True``,
      so the affine parameters get no gradient and the running statistics stay fixed after ``train()``;
    - BN weights initialised to 1 (``zero_init_residual=False``): with frozen BN a zero-initialised
      residual gamma could never leave zero.

    Module names follow the release (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0`` ...),
    so its checkpoints convert by adding the ``backbone.`` prefix
    (``tools/model_converters/bdl_release.py``, ``tools/model_converters/deeplab_resnet101_init.py``).

    Args:
        depth (int): ResNet depth, 101 in the paper; 18/34/50/152 for smaller or larger variants.
        strides, dilations, style, out_indices, norm_cfg, norm_eval, zero_init_residual: as in
            :class:`mmseg.models.backbones.ResNet`, with the release's values as defaults.
        **kwargs: any other argument of :class:`mmseg.models.backbones.ResNet` (``base_channels``,
            ``stem_channels``, ``init_cfg`` ...).
    """

    def __init__(self,
                 depth=101,
                 strides=(1, 2, 1, 1),
                 dilations=(1, 1, 2, 4),
                 out_indices=(3, ),
                 style='caffe',
                 norm_cfg=dict(type='BN', requires_grad=False),
                 norm_eval=True,
                 zero_init_residual=False,
                 **kwargs):
        super().__init__(
            depth=depth,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            style=style,
            norm_cfg=norm_cfg,
            norm_eval=norm_eval,
            zero_init_residual=zero_init_residual,
            **kwargs)

    def _make_stem_layer(self, in_channels, stem_channels):
        """Build MMSeg's stem, then use the release's max-pool (3x3, stride 2, padding 1, ``ceil_mode=True``).

        MMSeg's ``ResNet`` has no option for ``ceil_mode``; it changes the feature size whenever the
        stem conv's output side is even (e.g. a 47 pixel wide input gives 13 columns instead of 12).
        """
        super()._make_stem_layer(in_channels, stem_channels)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
