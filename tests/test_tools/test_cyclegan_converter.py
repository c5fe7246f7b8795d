# Copyright (c) bdl_mm contributors.
"""tools/model_converters/cyclegan_pytorch.py: pytorch-CycleGAN nets -> MMagic CycleGAN, zero missing/unexpected
keys and identical outputs, for a reference re-implementation of pytorch-CycleGAN's networks (release layout:
instance norm with running statistics, reflect padding)."""
import functools
import importlib.util
import os.path as osp

import pytest
import torch
import torch.nn as nn

import bdl_mm  # noqa: F401
from bdl_mm.apis.translate import load_translator

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location('cyclegan_pytorch',
                                              osp.join(ROOT, 'tools/model_converters/cyclegan_pytorch.py'))
conv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conv)

IN = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=True)  # BDL release networks.py


class RefResnetBlock(nn.Module):
    """pytorch-CycleGAN ResnetBlock (reflect padding)."""

    def __init__(self, dim, use_dropout):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), IN(dim), nn.ReLU(True)]
        block += [nn.Dropout(0.5)] if use_dropout else []
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), IN(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    """pytorch-CycleGAN ResnetGenerator with instance norm."""

    def __init__(self, ngf=4, n_blocks=2, use_dropout=False):
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=True), IN(ngf), nn.ReLU(True)]
        for i in range(2):
            m = 2**i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=True), IN(ngf * m * 2),
                      nn.ReLU(True)]
        model += [RefResnetBlock(ngf * 4, use_dropout) for _ in range(n_blocks)]
        for i in range(2):
            m = 2**(2 - i)
            model += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                      IN(ngf * m // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class RefNLayerDiscriminator(nn.Module):
    """pytorch-CycleGAN NLayerDiscriminator (n_layers=3) with instance norm."""

    def __init__(self, ndf=4, n_layers=3):
        super().__init__()
        seq = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True), IN(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True), IN(ndf * mult),
                nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def tiny_config(tmp_path, use_dropout=False):
    path = tmp_path / 'f.py'
    path.write_text(f"_base_ = ['{ROOT}/configs/translation/perceptual_cyclegan_base.py']\n"
                    f'model = dict(generator=dict(base_channels=4, num_blocks=2, use_dropout={use_dropout}), '
                    'discriminator=dict(base_channels=4))\n')
    return str(path)


def reference_nets(use_dropout=False):
    torch.manual_seed(0)
    nets = dict(G_A=RefResnetGenerator(use_dropout=use_dropout), G_B=RefResnetGenerator(use_dropout=use_dropout),
                D_A=RefNLayerDiscriminator(), D_B=RefNLayerDiscriminator())
    x = torch.randn(2, 3, 24, 24)
    for net in nets.values():
        net.train()(x)  # fills the instance-norm running statistics, as in a release checkpoint
    return nets


@pytest.mark.parametrize('use_dropout', [False, True])
def test_converted_model_is_identical(tmp_path, use_dropout):
    nets = reference_nets(use_dropout)
    folder = tmp_path / 'ckpt'
    folder.mkdir()
    for name, net in nets.items():
        torch.save(net.state_dict(), folder / f'latest_net_{name}.pth')
    assert any('running_mean' in k for k in nets['G_A'].state_dict())
    cfg = tiny_config(tmp_path, use_dropout)
    dst = str(tmp_path / 'out' / 'f.pth')
    assert conv.main([str(folder), dst, '--config', cfg]) == 0
    state = torch.load(dst, map_location='cpu', weights_only=True)['state_dict']
    model = load_translator(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == [] and unexpected == []
    model.train()  # dropout active in both or neither; eval() would make the reference use running stats
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for ref_name, domain in (('G_A', 'target'), ('G_B', 'source')):
        torch.manual_seed(1)
        expected = nets[ref_name].train()(x)
        torch.manual_seed(1)
        assert torch.allclose(model.generators[domain](x), expected, atol=1e-6), ref_name
    for ref_name, domain in (('D_A', 'target'), ('D_B', 'source')):
        assert torch.allclose(model.discriminators[domain](x), nets[ref_name].train()(x), atol=1e-6), ref_name
    # the translator (loaded from the converted file) gives G_A's translation, A -> B
    translator = load_translator(cfg, dst).train()
    torch.manual_seed(2)
    expected = nets['G_A'](x)
    torch.manual_seed(2)
    assert torch.allclose(translator.generators['target'](x), expected, atol=1e-6)


def test_combined_file_generators_only_and_bad_keys(tmp_path):
    nets = reference_nets()
    combined = str(tmp_path / 'all.pth')
    torch.save({'netG_A': nets['G_A'].state_dict(), 'netG_B': nets['G_B'].state_dict()}, combined)
    cfg = tiny_config(tmp_path)
    dst = str(tmp_path / 'g.pth')
    assert conv.main([combined, dst, '--config', cfg, '--domain-a', 'source', '--domain-b', 'target']) == 0
    state = torch.load(dst, map_location='cpu', weights_only=True)['state_dict']
    assert all(k.startswith('generators.') for k in state)
    translator = load_translator(cfg, dst)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.allclose(translator.generators['source'](x), nets['G_B'].train()(x), atol=1e-6)
    bad = dict(nets['G_A'].state_dict())
    bad['model.1.extra'] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"G_A: unexpected key 'model.1.extra'"):
        conv.convert_cyclegan(dict(G_A=bad, G_B=nets['G_B'].state_dict()))
    bn = RefResnetGenerator()
    bn.model[2] = nn.BatchNorm2d(4)
    with pytest.raises(ValueError, match='model.2 is a norm with parameters'):
        conv.convert_generator(bn.state_dict())
    three = str(tmp_path / 'three_blocks.pth')
    torch.save({'netG_A': RefResnetGenerator(n_blocks=3).state_dict(),
                'netG_B': RefResnetGenerator(n_blocks=3).state_dict()}, three)
    with pytest.raises(SystemExit, match=r'do not fit .*unexpected \[.generators.source.model.5.block'):
        conv.main([three, str(tmp_path / 'x.pth'), '--config', cfg])
    assert not osp.exists(tmp_path / 'x.pth')
