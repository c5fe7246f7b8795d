# Copyright (c) bdl_mm contributors.
import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """The DeepLabV2 classifier of BDL's segmentation model M (the release's ``Classifier_Module``).

    The logits are the SUM of parallel 3x3 convolutions (with bias) on the last backbone feature, one per
    dilation (padding = dilation): 6, 12, 18, 24. There is no dropout and no 1x1 ``conv_seg``: the parent's
    ``conv_seg`` is removed so that the head holds no unused parameters. MMSeg's ``ASPPHead`` is not
    reused because it is a different module (concatenation + 3x3 bottleneck + BN, not a sum of
    classifiers). Weights are drawn from N(0, 0.01) as in the release; biases start at 0 (the release leaves
    PyTorch's default, the paper says nothing). Logits come out at the feature resolution (1/8);
    ``loss_by_feat``/``predict_by_feat`` upsample them bilinearly with ``align_corners=True`` (release).

    Module names follow the release (``conv2d_list.N``), so its ``layer5.conv2d_list.N.*`` keys convert
    to ``decode_head.conv2d_list.N.*``.

    Args:
        in_channels (int): Channels of the backbone feature (2048 for ResNet-101).
        dilations (Sequence[int]): Dilation (= padding) of each branch. Default: (6, 12, 18, 24).
        align_corners (bool): Default: True (release).
        init_cfg (dict): Default: N(0, 0.01) weights, zero bias for every conv.
        **kwargs: ``num_classes``, ``loss_decode``, ``ignore_index``, ``in_index`` ... of
            :class:`BaseDecodeHead`. ``channels`` and ``dropout_ratio`` are not accepted (unused here).
    """

    def __init__(self,
                 in_channels,
                 dilations=(6, 12, 18, 24),
                 align_corners=True,
                 init_cfg=dict(type='Normal', std=0.01, bias=0, layer='Conv2d'),
                 **kwargs):
        for unused in ('channels', 'dropout_ratio', 'input_transform'):
            if unused in kwargs:
                raise ValueError(f'DeepLabV2Head does not use `{unused}` (got {kwargs[unused]!r}): its classifier '
                                 f'is the sum of dilated 3x3 convs on one feature map; remove it from the config')
        if not isinstance(in_channels, int):
            raise TypeError(f'DeepLabV2Head takes one feature map: in_channels must be an int, got {in_channels!r}')
        if len(dilations) == 0:
            raise ValueError('DeepLabV2Head needs at least one dilation, got an empty `dilations`')
        super().__init__(
            in_channels, in_channels, dropout_ratio=0, align_corners=align_corners, init_cfg=init_cfg, **kwargs)
        del self.conv_seg  # replaced by the sum of the dilated convs below
        self.dilations = tuple(dilations)
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, self.out_channels, kernel_size=3, padding=d, dilation=d, bias=True)
            for d in self.dilations)
        # Initialised here as well as through init_cfg, so that the head is right even where no
        # `init_weights()` is called (the release does it in the constructor).
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.zeros_(conv.bias)

    def cls_seg(self, feat):
        """Sum of the dilated 3x3 classifiers."""
        out = self.conv2d_list[0](feat)
        for conv in self.conv2d_list[1:]:
            out = out + conv(feat)
        return out

    def forward(self, inputs):
        """Logits at the resolution of the selected backbone feature."""
        return self.cls_seg(self._transform_inputs(inputs))
