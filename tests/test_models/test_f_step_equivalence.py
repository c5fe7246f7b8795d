# Copyright (c) bdl_mm contributors.
"""F's training step (``PerceptualCycleGAN``) against what it is defined to be, not against a copy of itself.

- Perceptual loss off: MMagic's own ``CycleGAN`` on the same weights and batches. With MMagic's update order the
  two steps are bitwise the same (losses and parameters); with the release's order (generators first) the generator
  update is the same as MMagic's when the discriminators do not move (their learning rate 0).
- Perceptual loss on: each ``loss_per_*`` term equals a functional re-implementation of the paper's definition
  written here (``perceptual_terms``), computed through the plain M (BatchNorm unfolded, NCHW); and the generators'
  update differs from MMagic's plain CycleGAN update by exactly the step of that functional loss. This holds for
  the fast path (BatchNorm folded into the convs, channels-last) and for M as stored.

Also here: the conv+BN folding on its own (what it folds, what it must leave alone) and the cache of M's folded copy.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmagic.models.editors.cyclegan import CycleGAN
from mmcv.cnn import ConvModule
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS
from toy_helpers import gan_cfg, load_tool

import bdl_mm  # noqa: F401
from bdl_mm.models.translators import PerceptualCycleGAN
from bdl_mm.models.translators.conv_bn_fold import fold_conv_bn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OFF = dict(lambda_per=0., lambda_per_recon=0.)
PLAIN_M = dict(fold_bn=False, channels_last=False)
make_batch = load_tool('benchmark_translation.py').make_batch  # PackInputs + pseudo_collate's batch
DOMAINS = ('source', 'target')


def small_deeplab_cfg(num_classes=5):
    """The flagship M (configs/_base_/models/deeplabv2_r101.py: DeepLabV2, caffe Bottlenecks, dilated, two summed
    branches), at depth 50 with 8 base channels."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/deeplabv2_r101.py')).model.to_dict()
    cfg['backbone'].update(depth=50, base_channels=8, stem_channels=8)
    cfg['decode_head'].update(in_channels=8 * 32, num_classes=num_classes)
    return cfg


def randomise_batchnorm(model, seed=1):
    """Running statistics and affine parameters away from (0, 1, 1, 0), so that folding them is not a no-op."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.fixture(autouse=True)
def _iter_zero():
    MessageHub.get_current_instance().update_info('iter', 0)


def build(per, order='generators_first', fast=dict(fold_bn=True, channels_last=True), seed=0):
    """F (``PerceptualCycleGAN``) with a small DeepLabV2 M whose BatchNorm statistics are randomised, and MMagic's
    ``CycleGAN`` holding the same generator and discriminator weights."""
    seg = dict(config=small_deeplab_cfg(), checkpoint=None, num_classes=5)
    torch.manual_seed(seed)
    ours = PerceptualCycleGAN(**gan_cfg(), segmentor=seg, perceptual_loss=dict(per, **fast), update_order=order)
    randomise_batchnorm(ours.segmentor)
    with DefaultScope.overwrite_default_scope('mmagic'):
        mmagic = CycleGAN(**gan_cfg())
    mmagic.load_state_dict(ours.state_dict())  # M is not part of F's state: G and D only
    return ours.train(), mmagic.train()


def run_steps(model, steps=2, lr_g=1e-3, lr_d=1e-3, kind='adam'):
    def one(params, lr):
        return OptimWrapper(torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999)) if kind == 'adam' else
                            torch.optim.SGD(params, lr=lr))

    wrapper = OptimWrapperDict(generators=one(model.generators.parameters(), lr_g),
                               discriminators=one(model.discriminators.parameters(), lr_d))
    logs = []
    for i in range(steps):
        MessageHub.get_current_instance().update_info('iter', i)
        log_vars = model.train_step(make_batch(2, 32, seed=i), wrapper)
        logs.append({k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()})
    return logs


def params(model, prefix=''):
    return {k: p.detach().clone() for k, p in model.named_parameters() if k.startswith(prefix)}


def perceptual_terms(model, m, batch, lambda_per, lambda_per_recon, distance='mse_instance_norm'):
    """The paper's perceptual loss (eq. 2-3, REFERENCE: lambda_per on the translated image, lambda_per_recon on the
    reconstruction), written out: for each domain d with the other domain e,
    ``loss_per_d = lambda_per * dist(M(x_d), M(G_e(x_d)))``,
    ``loss_per_recon_d = lambda_per_recon * dist(M(x_d), M(G_d(G_e(x_d))))``, where dist is the mean squared error
    of the instance-normalised logits (or L1), M is frozen and only its outputs for generated images carry gradients.
    ``m`` is M itself (eval mode, unfolded, NCHW); images go to M through F's ``to_seg_input``."""
    inputs = model.data_preprocessor(batch, True)['inputs']

    def dist(a, b):
        return F.mse_loss(F.instance_norm(a), F.instance_norm(b)) if distance == 'mse_instance_norm' else \
            F.l1_loss(a, b)

    def seg(x):
        return m(model.to_seg_input(x), mode='tensor')

    terms = {}
    for d, e in (DOMAINS, DOMAINS[::-1]):
        real = inputs[f'img_{d}']
        fake = model.generators[e](real)
        cycle = model.generators[d](fake)
        with torch.no_grad():
            target = seg(real)
        terms[f'loss_per_{d}'] = lambda_per * dist(seg(fake), target)
        terms[f'loss_per_recon_{d}'] = lambda_per_recon * dist(seg(cycle), target)
    return terms


@pytest.mark.parametrize('order', ['discriminators_first', 'generators_first'])
def test_perceptual_off_is_mmagic_cyclegan(order):
    ours, mmagic = build(OFF, order)
    ours.loss_segmentor = ours.seg_logits = lambda *a: pytest.fail('M ran with the perceptual loss off')
    if order == 'discriminators_first':  # MMagic's order: bitwise MMagic's step, two Adam steps
        assert run_steps(ours) == run_steps(mmagic)
        assert all(torch.equal(p, q) for p, q in zip(params(ours).values(), params(mmagic).values()))
    else:  # the release's order: with the discriminators still, the generators take MMagic's step
        logs_ours, logs_mmagic = run_steps(ours, 1, lr_d=0.), run_steps(mmagic, 1, lr_d=0.)
        for k, v in logs_mmagic[0].items():
            assert logs_ours[0][k] == pytest.approx(v, rel=1e-6), k
        g_mmagic = params(mmagic, 'generators')
        for k, p in params(ours, 'generators').items():
            torch.testing.assert_close(p, g_mmagic[k], rtol=0, atol=1e-7, msg=k)


PAPER = dict(lambda_per=0.1, lambda_per_recon=10.)
L1 = dict(lambda_per=1., lambda_per_recon=1., distance='l1')
FAST = dict(fold_bn=True, channels_last=True)


@pytest.mark.parametrize('per, fast, order', [
    *((per, fast, 'generators_first') for per in (PAPER, L1)
      for fast in (FAST, dict(fold_bn=True, channels_last=False), dict(fold_bn=False, channels_last=True), PLAIN_M)),
    (PAPER, FAST, 'discriminators_first'), (L1, PLAIN_M, 'discriminators_first')])
def test_perceptual_step_is_the_functional_loss(per, fast, order):
    """Losses: each term equals the functional one (relative 1e-5). Update (SGD, discriminators still, so that the
    update order does not change the generators' step): F's generator step minus MMagic's plain step is
    -lr * grad of the functional perceptual loss (1e-5 of the step)."""
    lr = 0.1
    ours, mmagic = build(per, order, fast=fast)
    m = copy.deepcopy(ours.segmentor).eval()
    g0 = params(ours, 'generators')
    with torch.enable_grad():
        terms = perceptual_terms(ours, m, make_batch(2, 32, seed=0), per['lambda_per'], per['lambda_per_recon'],
                                 per.get('distance', 'mse_instance_norm'))
        names = [k for k, _ in ours.generators.named_parameters()]
        grads = torch.autograd.grad(sum(terms.values()), list(ours.generators.parameters()), allow_unused=True)
    expected_step = {f'generators.{k}': (-lr * g if g is not None else 0 * g0[f'generators.{k}'])
                     for k, g in zip(names, grads)}

    (log_ours, ) = run_steps(ours, 1, lr_g=lr, lr_d=0., kind='sgd')
    (log_mmagic, ) = run_steps(mmagic, 1, lr_g=lr, lr_d=0., kind='sgd')
    assert sorted(k for k in log_ours if k.startswith('loss_per')) == sorted(terms)
    for k, v in terms.items():
        assert log_ours[k] == pytest.approx(float(v), rel=1e-5, abs=1e-7), k
    for k, v in log_mmagic.items():  # MMagic's own terms are untouched
        if k != 'loss':
            assert log_ours[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k

    g_ours, g_mmagic = params(ours, 'generators'), params(mmagic, 'generators')
    scale = max(s.abs().max().item() for s in expected_step.values())
    assert scale > 0  # the check can fail: the perceptual loss moves the generators
    for k, step in expected_step.items():
        torch.testing.assert_close((g_ours[k] - g0[k]) - (g_mmagic[k] - g0[k]), step, rtol=0, atol=1e-5 * scale,
                                   msg=k)
    if fast != PLAIN_M:
        folded = ours.loss_segmentor()
        assert (not any(isinstance(x, nn.BatchNorm2d) for x in folded.modules())) == fast['fold_bn']
        assert folded.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last) == \
            fast['channels_last']
    else:
        assert ours.loss_segmentor() is ours.segmentor  # M itself


def _conv_bn_block(order=('conv', 'norm', 'act')):
    return ConvModule(4, 4, 3, padding=1, norm_cfg=dict(type='BN'), order=order)


def test_fold_conv_bn_folds_known_pairs_only():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        m = SEG_MODELS.build(small_deeplab_cfg()).eval()
    randomise_batchnorm(m)
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    x = torch.randn(2, 3, 40, 48)
    with torch.no_grad():
        expected = m(x, mode='tensor')
        folded = copy.deepcopy(m)
        assert fold_conv_bn(folded) == n_bn == 53  # ResNet-50: stem + 3 per Bottleneck x 16 + 4 downsamples
        got = folded(x, mode='tensor')
    assert not any(isinstance(x, nn.BatchNorm2d) for x in folded.modules())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == n_bn  # the original is left as it was

    # BN before its conv in a ConvModule (order norm, conv, act): registered after the conv, but must NOT be folded
    for order, n in ((('conv', 'norm', 'act'), 1), (('norm', 'conv', 'act'), 0), (('conv', 'act', 'norm'), 0)):
        block = randomise_batchnorm(_conv_bn_block(order)).eval()
        x = torch.randn(1, 4, 8, 8)
        with torch.no_grad():
            expected = block(x)
            assert fold_conv_bn(block) == n, order
            torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    # a Sequential with something between conv and BN, a spectral-normalised conv: left alone
    seq = randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))).eval()
    assert fold_conv_bn(seq) == 0 and isinstance(seq[2], nn.BatchNorm2d)
    seq = randomise_batchnorm(nn.Sequential(nn.utils.spectral_norm(nn.Conv2d(3, 4, 3)), nn.BatchNorm2d(4))).eval()
    assert fold_conv_bn(seq) == 0
    seq = randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))).eval()
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        expected = seq(x)
        assert fold_conv_bn(seq) == 1 and isinstance(seq[1], nn.Identity) and seq[0].bias is not None
        torch.testing.assert_close(seq(x), expected, rtol=1e-5, atol=1e-6)


def test_loss_segmentor_is_rebuilt_when_m_changes():
    per = dict(lambda_per=0.1, lambda_per_recon=10.)
    ours, _ = build(per)
    fast = ours.loss_segmentor()
    assert fast is not ours.segmentor and ours.loss_segmentor() is fast  # cached
    assert not any(k.startswith('_loss_seg') or 'segmentor' in k for k in ours.state_dict())
    assert {id(p) for p in ours.parameters()}.isdisjoint({id(p) for p in fast.parameters()})
    assert not any(p.requires_grad for p in fast.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    before = ours.seg_logits([x])[0]
    # a new M(k-1) loaded in place: the copy follows
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in ours.segmentor.state_dict().items()}
    ours.segmentor.load_state_dict(state)
    assert ours.loss_segmentor() is not fast
    with torch.no_grad():
        expected = ours.segmentor(ours.to_seg_input(x), mode='tensor')
    after = ours.seg_logits([x])[0]
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    # a dtype move: rebuilt in the new dtype
    ours.double()
    assert ours.loss_segmentor().backbone.conv1.weight.dtype == torch.float64
    # a segmentor switched to train mode is put back in eval mode (its BatchNorm statistics are the folded ones)
    ours.segmentor.train()
    ours.loss_segmentor()
    assert not ours.segmentor.training


def test_fast_switches_are_checked():
    seg = dict(config=small_deeplab_cfg(), checkpoint=None, num_classes=5)
    with pytest.raises(ValueError, match=r"channels_last must be one of \(True, False, 'auto'\), got 'yes'"):
        PerceptualCycleGAN(**gan_cfg(), segmentor=seg, perceptual_loss=dict(channels_last='yes'))
    with pytest.raises(ValueError, match='fold_bn must be True or False, got 1'):
        PerceptualCycleGAN(**gan_cfg(), segmentor=seg, perceptual_loss=dict(fold_bn=1))
    model = PerceptualCycleGAN(**gan_cfg(), segmentor=seg)
    assert model.fold_bn is True and model.channels_last == 'auto'
    # 'auto': channels-last on the CPU
    assert model.loss_segmentor().backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
