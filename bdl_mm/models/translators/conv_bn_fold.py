# Copyright (c) bdl_mm contributors.
"""Fold eval-mode BatchNorm into the convolution before it, for a frozen network that is only ever run in eval mode.

F's perceptual loss runs the frozen M (DeepLabV2-ResNet101: 104 BatchNorm layers) forward on six images and backward
to four of them at every step; with its BatchNorm folded, each conv+BN pair is one conv (weights ``w * g / s``, bias
``b + (c - m) * g / s`` with ``s = sqrt(var + eps)``, computed in float64), which saves the BatchNorm passes forward
and backward. The result equals the unfolded network up to float rounding (relative ~1e-6).

Only pairs whose data flow is known are folded, never by guessing from the order of registration (mmcv's
``fuse_conv_bn`` folds any BN registered after a conv, which is wrong for, e.g., a ``ConvModule`` with
``order=('norm', 'conv', 'act')``):

- adjacent ``(Conv2d, BatchNorm)`` children of an ``nn.Sequential`` (ResNet downsample and deep stem, VGG blocks);
- mmcv's ``ConvModule`` whose ``order`` has ``'norm'`` right after ``'conv'``;
- MMSeg's ``ResNet`` stem (``conv1``/``norm1`` without ``deep_stem``) and its ``BasicBlock``/``Bottleneck``
  (``convN``/``normN``), for classes that keep MMSeg's ``forward``.

A conv is folded only if it is a plain ``nn.Conv2d`` (no hooks, no parametrisation such as spectral norm, not a
deformable or weight-standardised conv); a BatchNorm only if it tracks running statistics.
"""
from typing import Iterator, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import wrappers as mmcv_wrappers
from mmseg.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

_PLAIN_CONVS = (nn.Conv2d, mmcv_wrappers.Conv2d)


def _plain_conv(module) -> bool:
    return (type(module) in _PLAIN_CONVS and not module._forward_pre_hooks and not module._forward_hooks
            and not parametrize.is_parametrized(module))


def _foldable_bn(module) -> bool:
    return (isinstance(module, _BatchNorm) and module.track_running_stats and module.running_mean is not None
            and module.running_var is not None and not module._forward_pre_hooks and not module._forward_hooks)


def _pairs(module: nn.Module) -> Iterator[Tuple[nn.Module, str, str]]:
    """(parent, conv attribute, BatchNorm attribute) of every conv -> BN pair with a known data flow."""
    if type(module).forward is nn.Sequential.forward:
        names = list(module._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            yield module, conv_name, bn_name
    elif isinstance(module, ConvModule) and type(module).forward is ConvModule.forward:
        if module.with_norm and module.order.index('norm') == module.order.index('conv') + 1:
            yield module, 'conv', module.norm_name
    elif isinstance(module, ResNet) and type(module).forward is ResNet.forward:
        if not module.deep_stem:
            yield module, 'conv1', module.norm1_name
    elif isinstance(module, BasicBlock) and type(module).forward is BasicBlock.forward:
        yield module, 'conv1', module.norm1_name
        yield module, 'conv2', module.norm2_name
    elif isinstance(module, Bottleneck) and type(module).forward is Bottleneck.forward:
        yield module, 'conv1', module.norm1_name
        yield module, 'conv2', module.norm2_name
        yield module, 'conv3', module.norm3_name


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    var, mean = bn.running_var.double(), bn.running_mean.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(shift.to(dtype), requires_grad=conv.weight.requires_grad)


def fold_conv_bn(model: nn.Module) -> int:
    """Fold, in place, every BatchNorm of ``model`` that directly follows a plain conv (see the module docstring)
    into that conv and replace it with ``nn.Identity``. Valid only while ``model`` stays in eval mode (the running
    statistics are baked in). Returns the number of folded BatchNorm layers."""
    folded = 0
    for module in list(model.modules()):
        for parent, conv_name, bn_name in list(_pairs(module)):
            conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
            if conv is None or bn is None or not _plain_conv(conv) or not _foldable_bn(bn):
                continue
            if conv.out_channels != bn.num_features:
                continue
            _fold(conv, bn)
            setattr(parent, bn_name, nn.Identity())
            if isinstance(parent, ConvModule):
                parent.efficient_conv_bn_eval_forward = None  # its fused path expects a BatchNorm
            folded += 1
    return folded
