"""DeepLabV2-ResNet (M): release layout, parameter count, odd input sizes, frozen BN, classifier init."""
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch.nn.modules.batchnorm import _BatchNorm

import bdl_mm  # noqa: F401  (registers the modules)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/_base_/models/deeplabv2_r101.py')


def build(cfg):
    """Build under the mmseg scope, as a config with `default_scope = 'mmseg'` does."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def full_cfg():
    return copy.deepcopy(Config.fromfile(CONFIG).model)


def toy_cfg(depth=50, num_classes=3):
    """Small widths; MMSeg's prediction order (logits upsampled), as these tests compare with it."""
    cfg = full_cfg()
    cfg.test_cfg.upsample = 'logits'
    cfg.backbone.update(depth=depth, stem_channels=8, base_channels=4)
    expansion = 4 if depth >= 50 else 1
    cfg.decode_head.update(in_channels=4 * 8 * expansion, num_classes=num_classes)
    return cfg


def expected_params(layers, stem=64, base=64, num_classes=19, branches=4):
    """Independent count of DeepLabV2-ResNet (bottleneck) parameters: convs without bias, affine BN."""
    total = 3 * stem * 7 * 7 + 2 * stem
    inplanes = stem
    for i, blocks in enumerate(layers):
        p = base * 2**i
        for b in range(blocks):
            cin = inplanes if b == 0 else 4 * p
            total += cin * p + 2 * p + 9 * p * p + 2 * p + p * 4 * p + 2 * 4 * p
            if b == 0:  # downsample: 1x1 conv + BN
                total += cin * 4 * p + 2 * 4 * p
        inplanes = 4 * p
    return total + branches * (inplanes * 9 * num_classes + num_classes)


def feature_size(size):
    """Release arithmetic: 7x7/2 conv (pad 3), 3x3/2 max-pool (pad 1, ceil mode), 1x1/2 conv in layer2."""
    s = (size + 2 * 3 - 7) // 2 + 1
    s = math.ceil((s + 2 - 3) / 2) + 1
    return (s - 1) // 2 + 1


def test_full_r101_params_and_odd_input_shapes():
    model = build(full_cfg())
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == expected_params([3, 4, 23, 3])
    assert n_params == 43_901_068  # ResNet-101 without fc (42,500,160) + 4 x (2048*9*19 + 19)
    assert abs(n_params - 43.9e6) < 0.05e6
    n_bn = sum(p.numel() for m in model.modules() if isinstance(m, _BatchNorm) for p in m.parameters())
    # the published classifier holds four branches but trains two (branches 3-4 frozen at their init)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n_params - n_bn - 2 * (2048 * 9 * 19 + 19)
    # every ResNet block is caffe style: the stride sits on the 1x1 conv
    assert model.backbone.layer2[0].conv1.stride == (2, 2) and model.backbone.layer2[0].conv2.stride == (1, 1)
    assert model.backbone.layer4[0].conv2.dilation == (4, 4) and model.backbone.layer3[5].conv2.dilation == (2, 2)
    assert model.backbone.maxpool.ceil_mode
    model.eval()
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        feats = model.extract_feat(x)
        assert len(feats) == 1 and feats[0].shape == (1, 2048, 5, 7)  # 47 -> 7 columns only with ceil mode
        logits = model.decode_head.forward(feats)
        assert logits.shape == (1, 19, 5, 7)
        pred = model.predict(x)
    assert pred[0].seg_logits.data.shape == (19, 33, 47)
    assert pred[0].pred_sem_seg.data.shape == (1, 33, 47)


@pytest.mark.parametrize('size,depth', [((33, 47), 50), ((65, 97), 50), ((44, 31), 18), ((16, 17), 18)])
def test_output_stride_8_with_ceil_mode(size, depth):
    model = build(toy_cfg(depth=depth)).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        feat = model.extract_feat(x)[0]
        assert feat.shape[2:] == (feature_size(size[0]), feature_size(size[1]))
        logits = model.decode_head.forward([feat])
        pred = model.predict(x)
    assert len(pred) == 2 and pred[1].seg_logits.data.shape == (3, *size)
    # EncoderDecoder upsamples the 1/8 logits bilinearly with align_corners=True (release)
    expected = F.interpolate(logits, size=size, mode='bilinear', align_corners=True)
    torch.testing.assert_close(pred[1].seg_logits.data, expected[1])


def test_batchnorm_frozen_in_train_mode():
    """The documented switch norm_eval=True: statistics frozen too (the release's batch statistics: test_fidelity)."""
    cfg = toy_cfg()
    cfg.backbone.norm_eval = True
    model = build(cfg)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert len(bns) == 1 + 3 * 3 + 4 * 3 + 6 * 3 + 3 * 3 + 4  # stem, 16 bottlenecks x 3, 4 downsamples
    for bn in bns:  # non-trivial running statistics, so that an update would show
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
    model.train()
    assert model.training and model.backbone.layer1.training
    assert all(not bn.training for bn in bns)
    assert all(not p.requires_grad for bn in bns for p in bn.parameters())
    sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 3, (1, 33, 47))))
    sample.set_metainfo(dict(img_shape=(33, 47), pad_shape=(33, 47)))
    losses = model.loss(torch.randn(1, 3, 33, 47) * 50, [sample])
    assert torch.isfinite(losses['decode.loss_ce'])
    losses['decode.loss_ce'].backward()
    for bn, (mean, var) in zip(bns, before):
        assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
        assert bn.weight.grad is None
    assert model.backbone.conv1.weight.grad is not None and model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.decode_head.conv2d_list[1].weight.grad.abs().sum() > 0
    assert model.decode_head.conv2d_list[3].weight.grad is None  # published classifier: branch 4 not summed


def test_classifier_sum_of_four_dilated_convs_and_init():
    """DeepLabV2 as designed (summed_branches=None) with zero biases (the published release: test_fidelity)."""
    cfg = full_cfg().decode_head
    cfg.update(summed_branches=None, bias_init='zero')
    head = build(cfg)
    assert not hasattr(head, 'conv_seg') and head.dropout is None
    assert head.align_corners is True
    assert [(c.dilation, c.padding, c.kernel_size) for c in head.conv2d_list] == [
        ((d, d), (d, d), (3, 3)) for d in (6, 12, 18, 24)]
    for _ in range(2):  # as constructed, then after init_weights() (what the runner calls)
        for conv in head.conv2d_list:
            assert abs(conv.weight.std().item() - 0.01) < 3e-4 and abs(conv.weight.mean().item()) < 3e-4
            assert torch.equal(conv.bias, torch.zeros(19))
        head.init_weights()
    # the logits are the SUM of the four branches
    x = torch.randn(1, 2048, 9, 11)
    with torch.no_grad():
        for conv in head.conv2d_list:
            conv.bias.normal_()
        expected = sum(F.conv2d(x, c.weight, c.bias, padding=c.padding, dilation=c.dilation) for c in head.conv2d_list)
        torch.testing.assert_close(head.forward([x]), expected)
    # no parameter left unused by a forward
    head.forward([x]).sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_head_rejects_unused_options():
    cfg = full_cfg().decode_head
    cfg.channels = 512
    with pytest.raises(ValueError, match='channels'):
        build(cfg)
