# Copyright (c) bdl_mm contributors.
import torch
import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


def bilinear_upsampling_weight(channels, kernel_size):
    """Per-channel 2D bilinear kernel for ``ConvTranspose2d(channels, channels, kernel_size)`` (caffe FCN).

    Written by hand: neither MMSeg, mmcv nor mmengine ships this initialiser. Same values as the release's
    ``get_upsampling_weight``.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = filt
    return weight.float()


@MODELS.register_module()
class FCN8sHead(BaseDecodeHead):
    """FCN-8s decoder of BDL's VGG16 segmentation model M (the release's ``model/fcn8s.py``).

    Takes the output of :class:`VGG16FCN`, ``(img, pool3, pool4, fc7)``::

        score_fr(fc7) -> upscore2 (4x4, s2)                                   + crop(score_pool4(0.01 * pool4), 5)
                      -> upscore_pool4 (4x4, s2)                              + crop(score_pool3(1e-4 * pool3), 9)
                      -> upscore8 (16x16, s8) -> crop(., 31) to the size of img

    The transposed convs have no bias and are initialised as bilinear upsampling; like the release (which
    leaves them out of its optimiser) they are fixed by default (``fixed_upsampling=True``:
    ``requires_grad=False``). The score convs start at zero (release, FCN paper). The logits come out at the
    input size, so ``loss_by_feat``/``predict_by_feat`` resize nothing on unpadded inputs. Module names
    are the release's, so its ``score_fr.*``, ``upscore2.*`` ... keys convert to ``decode_head.<same>``.
    The parent's ``conv_seg`` and dropout are not used and removed.

    Args:
        in_channels (Sequence[int]): Channels of ``(img, pool3, pool4, fc7)``. Default: (3, 256, 512, 4096).
        in_index (Sequence[int]): Indices of those four in the backbone outputs. Default: (0, 1, 2, 3).
        pool4_scale, pool3_scale (float): Default: 0.01, 0.0001 (release).
        crop_offsets (Sequence[int]): Crops of score_pool4, score_pool3 and the final output.
            Default: (5, 9, 31) (release).
        fixed_upsampling (bool): Keep the bilinear transposed convs fixed. Default: True (release).
        align_corners (bool): Default: True.
        **kwargs: ``num_classes``, ``loss_decode``, ``ignore_index`` ... of :class:`BaseDecodeHead`.
            ``channels``, ``dropout_ratio`` and ``input_transform`` are not accepted.
    """

    def __init__(self,
                 in_channels=(3, 256, 512, 4096),
                 in_index=(0, 1, 2, 3),
                 pool4_scale=0.01,
                 pool3_scale=0.0001,
                 crop_offsets=(5, 9, 31),
                 fixed_upsampling=True,
                 align_corners=True,
                 init_cfg=None,
                 **kwargs):
        for unused in ('channels', 'dropout_ratio', 'input_transform'):
            if unused in kwargs:
                raise ValueError(f'FCN8sHead does not use `{unused}` (got {kwargs[unused]!r}); remove it from the '
                                 f'config')
        if len(in_channels) != 4 or len(in_index) != 4:
            raise ValueError(f'FCN8sHead takes 4 inputs (img, pool3, pool4, fc7) from VGG16FCN, got '
                             f'in_channels={tuple(in_channels)}, in_index={tuple(in_index)}')
        if len(crop_offsets) != 3:
            raise ValueError(f'FCN8sHead needs 3 crop offsets (pool4, pool3, final), got {tuple(crop_offsets)}')
        super().__init__(
            tuple(in_channels),
            in_channels[-1],
            in_index=tuple(in_index),
            input_transform='multiple_select',
            dropout_ratio=0,
            align_corners=align_corners,
            init_cfg=init_cfg,
            **kwargs)
        del self.conv_seg  # the score convs below classify
        self.pool4_scale = pool4_scale
        self.pool3_scale = pool3_scale
        self.crop_offsets = tuple(crop_offsets)
        self.fixed_upsampling = fixed_upsampling
        _, pool3_channels, pool4_channels, fc7_channels = in_channels
        n = self.out_channels
        self.score_fr = nn.Conv2d(fc7_channels, n, 1)
        self.score_pool3 = nn.Conv2d(pool3_channels, n, 1)
        self.score_pool4 = nn.Conv2d(pool4_channels, n, 1)
        self.upscore2 = nn.ConvTranspose2d(n, n, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n, n, 16, stride=8, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n, n, 4, stride=2, bias=False)
        self._init_release_weights()

    def _init_release_weights(self):
        """Zero score convs, bilinear transposed convs (release ``_initialize_weights``)."""
        for conv in (self.score_fr, self.score_pool3, self.score_pool4):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        for up in (self.upscore2, self.upscore8, self.upscore_pool4):
            with torch.no_grad():
                up.weight.copy_(bilinear_upsampling_weight(up.in_channels, up.kernel_size[0]))
            up.weight.requires_grad_(not self.fixed_upsampling)

    def init_weights(self):
        """Apply ``init_cfg`` if given (e.g. ``Pretrained``), else the release's initialisation."""
        if self.init_cfg is None:
            self._init_release_weights()
        super().init_weights()

    @staticmethod
    def _crop(x, offset, size, name):
        h, w = size
        if x.shape[2] < offset + h or x.shape[3] < offset + w:
            raise ValueError(f'FCN8sHead: cannot crop {h}x{w} at offset {offset} from {name} of size '
                             f'{x.shape[2]}x{x.shape[3]}; was the input passed through VGG16FCN (conv1_1 padding 100)?')
        return x[:, :, offset:offset + h, offset:offset + w]

    def forward(self, inputs):
        """Logits at the size of the network input (``inputs[in_index[0]]``)."""
        img, pool3, pool4, fc7 = self._transform_inputs(inputs)
        off4, off3, off_final = self.crop_offsets
        upscore2 = self.upscore2(self.score_fr(fc7))
        score_pool4c = self._crop(self.score_pool4(pool4 * self.pool4_scale), off4, upscore2.shape[2:], 'score_pool4')
        upscore_pool4 = self.upscore_pool4(upscore2 + score_pool4c)
        score_pool3c = self._crop(
            self.score_pool3(pool3 * self.pool3_scale), off3, upscore_pool4.shape[2:], 'score_pool3')
        upscore8 = self.upscore8(upscore_pool4 + score_pool3c)
        return self._crop(upscore8, off_final, img.shape[2:], 'upscore8').contiguous()
