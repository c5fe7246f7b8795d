"""Output-space discriminator D_M: 5 convs k4 s2 p1, 64-128-256-512-1, LeakyReLU(0.2), class-count check."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS

import bdl_mm  # noqa: F401  (registers the modules)
from bdl_mm.models.discriminators import OutputDiscriminator, check_num_classes

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/_base_/models/output_discriminator.py')


def build(cfg):
    """Build under the mmseg scope, as a config with `default_scope = 'mmseg'` does."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def conv_out(size):
    return (size + 2 - 4) // 2 + 1


def test_config_builds_release_discriminator():
    disc = build(Config.fromfile(CONFIG).discriminator)
    assert isinstance(disc, OutputDiscriminator) and disc.in_channels == 19
    convs = [disc.conv1, disc.conv2, disc.conv3, disc.conv4, disc.classifier]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(19, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    widths = [19, 64, 128, 256, 512, 1]
    assert sum(p.numel() for p in disc.parameters()) == sum(a * b * 16 + b for a, b in zip(widths, widths[1:]))
    assert sum(p.numel() for p in disc.parameters()) == 2_781_121
    assert sorted(disc.state_dict()) == sorted(f'{n}.{p}' for n in ('conv1', 'conv2', 'conv3', 'conv4', 'classifier')
                                               for p in ('weight', 'bias'))


@pytest.mark.parametrize('size', [(64, 96), (65, 97), (33, 47)])
def test_forward_matches_functional_reference(size):
    torch.manual_seed(0)
    disc = OutputDiscriminator(in_channels=5, base_channels=4)
    with torch.no_grad():
        disc.classifier.bias.fill_(-5.0)  # negative logits: an activation after the classifier would show
    x = torch.randn(2, 5, *size).softmax(dim=1)
    out = disc(x)
    h, w = size
    for _ in range(5):
        h, w = conv_out(h), conv_out(w)
    assert out.shape == (2, 1, h, w)
    ref = x
    for name in ('conv1', 'conv2', 'conv3', 'conv4'):
        conv = getattr(disc, name)
        ref = F.leaky_relu(F.conv2d(ref, conv.weight, conv.bias, stride=2, padding=1), 0.2)
    ref = F.conv2d(ref, disc.classifier.weight, disc.classifier.bias, stride=2, padding=1)
    torch.testing.assert_close(out, ref)
    assert (out < -4).all()  # no activation after the classifier


def test_class_count_mismatch_names_both_numbers():
    check_num_classes(19, 19)
    with pytest.raises(ValueError, match=r'in_channels=19.*\b16\b'):
        check_num_classes(19, 16)
    disc = OutputDiscriminator(in_channels=19, base_channels=4)
    with pytest.raises(ValueError, match=r'\(N, 19, H, W\).*\(1, 16, 32, 32\)'):
        disc(torch.zeros(1, 16, 32, 32))
    with pytest.raises(ValueError, match='in_channels'):
        OutputDiscriminator(in_channels=0)
