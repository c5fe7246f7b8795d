"""VGG16-FCN8s (M): release layout, parameter count, ceil-mode/crop arithmetic, bilinear upsampling."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import bdl_mm  # noqa: F401  (registers the modules)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/_base_/models/fcn8s_vgg16.py')


def build(cfg):
    """Build under the mmseg scope, as a config with `default_scope = 'mmseg'` does."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)
RELEASE_CONVS = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv4_1', 'conv4_2',
                 'conv4_3', 'conv5_1', 'conv5_2', 'conv5_3', 'fc6', 'fc7']


def full_cfg():
    return copy.deepcopy(Config.fromfile(CONFIG).model)


def toy_cfg(num_classes=3, base=2, fc=8):
    cfg = full_cfg()
    cfg.backbone.update(base_channels=base, fc_channels=fc)
    cfg.decode_head.update(in_channels=(3, 4 * base, 8 * base, fc), num_classes=num_classes)
    return cfg


def expected_params(num_classes=19, base=64, fc=4096):
    """Independent count: 13 3x3 convs, fc6 7x7, fc7 1x1 (all with bias), 3 score convs, 3 transposed convs."""
    widths = [base] * 2 + [2 * base] * 2 + [4 * base] * 3 + [8 * base] * 6
    total, cin = 0, 3
    for w in widths:
        total += cin * w * 9 + w
        cin = w
    total += cin * fc * 49 + fc + fc * fc + fc
    total += sum(c * num_classes + num_classes for c in (fc, 8 * base, 4 * base))
    return total + num_classes * num_classes * (16 + 16 + 256)


def release_forward(sd, x, pool4_scale=0.01, pool3_scale=0.0001):
    """The release's FCN8s.forward (model/fcn8s.py) written functionally on a state dict with release keys."""
    h, feats = x, {}
    for name in RELEASE_CONVS[:13]:
        h = F.relu(F.conv2d(h, sd[f'{name}.weight'], sd[f'{name}.bias'], padding=100 if name == 'conv1_1' else 1))
        if name in ('conv1_2', 'conv2_2', 'conv3_3', 'conv4_3', 'conv5_3'):
            h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            feats[name[4]] = h
    h = F.relu(F.conv2d(h, sd['fc6.weight'], sd['fc6.bias']))
    h = F.relu(F.conv2d(h, sd['fc7.weight'], sd['fc7.bias']))
    upscore2 = F.conv_transpose2d(F.conv2d(h, sd['score_fr.weight'], sd['score_fr.bias']), sd['upscore2.weight'],
                                  stride=2)
    s4 = F.conv2d(feats['4'] * pool4_scale, sd['score_pool4.weight'], sd['score_pool4.bias'])
    s4 = s4[:, :, 5:5 + upscore2.size(2), 5:5 + upscore2.size(3)]
    up4 = F.conv_transpose2d(upscore2 + s4, sd['upscore_pool4.weight'], stride=2)
    s3 = F.conv2d(feats['3'] * pool3_scale, sd['score_pool3.weight'], sd['score_pool3.bias'])
    s3 = s3[:, :, 9:9 + up4.size(2), 9:9 + up4.size(3)]
    out = F.conv_transpose2d(up4 + s3, sd['upscore8.weight'], stride=8)
    return out[:, :, 31:31 + x.size(2), 31:31 + x.size(3)]


def release_state_dict(model):
    """Our keys -> release keys (inverse of the converter): drop the `backbone.` / `decode_head.` prefix."""
    return {k.split('.', 1)[1]: v for k, v in model.state_dict().items()}


def test_full_vgg16_fcn8s_params_and_shapes():
    model = build(full_cfg())
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == expected_params()
    assert n_params == 134_456_985 and abs(n_params - 134.5e6) < 0.1e6  # "about 134M"
    # the three bilinear transposed convs (103,968 weights) are fixed, as in the release's optimiser
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n_params - 19 * 19 * 288
    # module names are the release's, so converted weights map 1:1
    assert sorted(release_state_dict(model)) == sorted(
        [f'{n}.{p}' for n in RELEASE_CONVS + ['score_fr', 'score_pool3', 'score_pool4'] for p in ('weight', 'bias')]
        + [f'{n}.weight' for n in ('upscore2', 'upscore_pool4', 'upscore8')])
    model.eval()
    x = torch.randn(1, 3, 33, 47)
    captured = {}
    model.backbone.register_forward_hook(lambda module, args, out: captured.update(feats=out))
    with torch.no_grad():  # one forward of the full model (~3 s on one core): padding 100 makes any input large
        pred = model.predict(x)
    img, pool3, pool4, fc7 = captured['feats']
    # 33 + 198 = 231 -> ceil-mode pools 116, 58, 29, 15, 8 -> fc6 2; 47 + 198 = 245 -> 123, 62, 31, 16, 8 -> 2
    assert img is x and pool3.shape == (1, 256, 29, 31) and pool4.shape == (1, 512, 15, 16)
    assert fc7.shape == (1, 4096, 2, 2)
    with torch.no_grad():  # the head itself crops to the input size (cheap: the trunk is not rerun)
        assert model.decode_head.forward(captured['feats']).shape == (1, 19, 33, 47)
    assert pred[0].seg_logits.data.shape == (19, 33, 47)
    # score convs start at zero (release): uniform probabilities (BDLEncoderDecoder stores the softmax, release order)
    torch.testing.assert_close(pred[0].seg_logits.data, torch.full((19, 33, 47), 1 / 19))


@pytest.mark.parametrize('size', [(33, 47), (65, 97), (1, 1), (8, 9), (70, 31)])
def test_matches_release_forward_at_odd_sizes(size):
    torch.manual_seed(0)
    model = build(toy_cfg()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'upscore' not in name:
                p.normal_(0, 0.5)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model._forward(x)
        ref = release_forward(release_state_dict(model), x)
    assert out.shape == (2, 3, *size)
    assert out.abs().sum() > 0
    torch.testing.assert_close(out, ref)
    pred = model.predict(x)  # release evaluation: softmax of the input-sized logits (no further upsampling here)
    torch.testing.assert_close(pred[1].seg_logits.data, F.softmax(ref[1], 0))


def test_upsampling_is_bilinear_and_fixed():
    head = build(full_cfg().decode_head)
    assert not hasattr(head, 'conv_seg') and head.dropout is None
    f4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    f16 = 1 - (torch.arange(16.) - 7.5).abs() / 8  # 1/16, 3/16, ..., 15/16, 15/16, ..., 1/16
    for name, f, stride in (('upscore2', f4, 2), ('upscore_pool4', f4, 2), ('upscore8', f16, 8)):
        up = getattr(head, name)
        assert up.bias is None and not up.weight.requires_grad and up.stride == (stride, stride)
        eye = torch.eye(19)[:, :, None, None]
        torch.testing.assert_close(up.weight, eye * torch.outer(f, f))
    # a constant map stays constant away from the borders (bilinear interpolation)
    up = head.upscore8(torch.full((1, 19, 4, 4), 2.0))
    torch.testing.assert_close(up[:, :, 8:-8, 8:-8], torch.full_like(up[:, :, 8:-8, 8:-8], 2.0))
    head.init_weights()
    torch.testing.assert_close(head.upscore8.weight, torch.eye(19)[:, :, None, None] * torch.outer(f16, f16))
    assert head.score_fr.weight.abs().sum() == 0 and head.score_pool3.bias.abs().sum() == 0


def test_train_step_gradients():
    torch.manual_seed(0)
    model = build(toy_cfg())
    model.init_weights()
    model.train()
    sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 3, (1, 33, 47))))
    sample.set_metainfo(dict(img_shape=(33, 47), pad_shape=(33, 47)))
    losses = model.loss(torch.randn(1, 3, 33, 47), [sample])
    assert torch.isclose(losses['decode.loss_ce'], torch.log(torch.tensor(3.0)))  # zero logits at start
    losses['decode.loss_ce'].backward()
    assert model.decode_head.score_fr.weight.grad.abs().sum() > 0
    assert model.decode_head.score_pool3.weight.grad.abs().sum() > 0
    assert model.decode_head.upscore8.weight.grad is None


def test_head_checks_inputs():
    cfg = full_cfg().decode_head
    cfg.in_channels = (256, 512, 4096)
    cfg.in_index = (0, 1, 2)
    with pytest.raises(ValueError, match='4 inputs'):
        build(cfg)
