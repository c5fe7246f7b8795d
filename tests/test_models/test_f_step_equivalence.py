# Copyright (c) bdl_mm contributors.
"""Issue 14: the faster F step computes what the step before it computed.

``ReferencePerceptualCycleGAN`` below is a verbatim copy of the perceptual loss and the training step of
``PerceptualCycleGAN`` before the speed work (M run as stored: BatchNorm unfolded, NCHW). The optimised step (M with
folded BatchNorm, channels-last) must give, from the same seed, weights and batch:

- with the perceptual loss off: bitwise the same losses and parameters (M is never run);
- with it on: the same losses within 1e-5 (relative) and the same parameters within 1e-5, for both update orders.

Also here: the conv+BN folding on its own (what it folds, what it must leave alone) and the cache of M's folded copy.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmagic.models.utils import set_requires_grad
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
make_batch = load_tool('benchmark_translation.py').make_batch  # PackInputs + pseudo_collate's batch


class ReferencePerceptualCycleGAN(PerceptualCycleGAN):
    """The step before issue 14 (bdl_mm 765ef60 + update_order), copied verbatim: M itself, NCHW, unfolded."""

    def seg_logits(self, imgs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        groups: Dict[tuple, List[int]] = {}
        for i, img in enumerate(imgs):
            groups.setdefault(tuple(img.shape[1:]), []).append(i)
        out: List[Optional[torch.Tensor]] = [None] * len(imgs)
        for idxs in groups.values():
            batch = torch.cat([imgs[i] for i in idxs]) if len(idxs) > 1 else imgs[idxs[0]]
            logits = self.segmentor(self.to_seg_input(batch), mode='tensor')
            for i, chunk in zip(idxs, logits.split([imgs[i].shape[0] for i in idxs])):
                out[i] = chunk
        return out

    def perceptual_distance(self, pred, target):
        if self.distance == 'mse_instance_norm':
            return F.mse_loss(F.instance_norm(pred), F.instance_norm(target))
        return F.l1_loss(pred, target)

    def _get_perceptual_loss(self, outputs: dict) -> Dict[str, torch.Tensor]:
        seg = self.segmentor
        if seg.training:
            seg.eval()
        terms = []
        for src in self._reachable_domains:
            tgt = self._get_opposite_domain(src)
            if self.lambda_per != 0:
                terms.append((f'loss_per_{src}', self.lambda_per, src, outputs[f'fake_{tgt}']))
            if self.lambda_per_recon != 0:
                terms.append((f'loss_per_recon_{src}', self.lambda_per_recon, src, outputs[f'cycle_{src}']))
        reals = [outputs[f'real_{d}'] for d in self._reachable_domains]
        fakes = [t[3] for t in terms]
        if self.batch_mode == 'split':
            with torch.no_grad():
                real_logits = self.seg_logits(reals)
            fake_logits = self.seg_logits(fakes)
        elif self.batch_mode == 'joint':
            logits = self.seg_logits(reals + fakes)
            real_logits = [x.detach() for x in logits[:len(reals)]]
            fake_logits = logits[len(reals):]
        else:
            with torch.no_grad():
                real_logits = [self.seg_logits([x])[0] for x in reals]
            fake_logits = [self.seg_logits([x])[0] for x in fakes]
        real_of = dict(zip(self._reachable_domains, real_logits))
        return {name: weight * self.perceptual_distance(pred, real_of[src])
                for (name, weight, src, _), pred in zip(terms, fake_logits)}

    def _get_gen_loss(self, outputs):
        loss_g, log_vars_g = super(PerceptualCycleGAN, self)._get_gen_loss(outputs)  # MMagic's CycleGAN
        if not self.with_perceptual:
            return loss_g, log_vars_g
        loss_per, log_vars_per = self.parse_losses(self._get_perceptual_loss(outputs))
        log_vars_per.pop('loss')
        log_vars_g.update(log_vars_per)
        log_vars_g['loss'] = log_vars_g['loss'] + loss_per.detach()
        return loss_g + loss_per, log_vars_g

    def train_step(self, data: dict, optim_wrapper):
        if self.update_order == 'discriminators_first':
            return super(PerceptualCycleGAN, self).train_step(data, optim_wrapper)  # MMagic's CycleGAN
        data = self.data_preprocessor(data, True)
        inputs_dict = data['inputs']
        gen_optim, disc_optim = optim_wrapper['generators'], optim_wrapper['discriminators']
        outputs, log_vars = dict(), dict()
        with gen_optim.optim_context(self.generators):
            for target_domain in self._reachable_domains:
                source_domain = self.get_other_domains(target_domain)[0]
                results = self(inputs_dict[f'img_{source_domain}'], test_mode=False, target_domain=target_domain)
                outputs[f'real_{source_domain}'] = results['source']
                outputs[f'fake_{target_domain}'] = results['target']
                results = self(results['target'], test_mode=False, target_domain=source_domain)
                outputs[f'cycle_{source_domain}'] = results['target']
            set_requires_grad(self.discriminators, False)
            try:
                loss_g, log_vars_g = self._get_gen_loss(outputs)
                gen_optim.update_params(loss_g)
            finally:
                set_requires_grad(self.discriminators, True)
        log_vars.update(log_vars_g)
        with disc_optim.optim_context(self.discriminators):
            loss_d, log_vars_d = self._get_disc_loss(outputs)
            disc_optim.update_params(loss_d)
        log_vars.update(log_vars_d)
        return log_vars


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


def optim(model, kind='adam'):
    def one(params):
        if kind == 'adam':
            return OptimWrapper(torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.999)))
        return OptimWrapper(torch.optim.SGD(params, lr=0.1))

    return OptimWrapperDict(generators=one(model.generators.parameters()),
                            discriminators=one(model.discriminators.parameters()))


@pytest.fixture(autouse=True)
def _iter_zero():
    MessageHub.get_current_instance().update_info('iter', 0)


def build_pair(per, order, fast=dict(fold_bn=True, channels_last=True)):
    """(optimised, reference) from the same seed, with the same G/D weights and the same M (BatchNorm randomised)."""
    seg = dict(config=small_deeplab_cfg(), checkpoint=None, num_classes=5)
    torch.manual_seed(0)
    ours = PerceptualCycleGAN(**gan_cfg(), segmentor=seg, perceptual_loss=dict(per, **fast), update_order=order)
    torch.manual_seed(0)
    ref = ReferencePerceptualCycleGAN(**gan_cfg(), segmentor=seg, perceptual_loss=dict(per, fold_bn=False,
                                                                                         channels_last=False),
                                      update_order=order)
    ref.load_state_dict(ours.state_dict())
    randomise_batchnorm(ours.segmentor)
    ref.segmentor.load_state_dict(ours.segmentor.state_dict())
    return ours.train(), ref.train()


def run_steps(model, steps=2, kind='adam'):
    wrapper = optim(model, kind)
    logs = []
    for i in range(steps):
        MessageHub.get_current_instance().update_info('iter', i)
        log_vars = model.train_step(make_batch(2, 32, seed=i), wrapper)
        logs.append({k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()})
    return logs


@pytest.mark.parametrize('order', ['generators_first', 'discriminators_first'])
def test_perceptual_off_is_bitwise_the_step_before(order):
    ours, ref = build_pair(OFF, order)
    logs_ours, logs_ref = run_steps(ours), run_steps(ref)
    assert logs_ours == logs_ref  # every loss, bitwise, at both steps
    ref_params = dict(ref.named_parameters())
    assert all(torch.equal(p, ref_params[k]) for k, p in ours.named_parameters())
    assert ours.__dict__['_loss_seg'] is None  # M (and its folded copy) never ran


def updates(model, steps=1):
    """{name: parameter change} after ``steps`` SGD steps, and the largest change of any parameter."""
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    logs = run_steps(model, steps, kind='sgd')
    delta = {k: p.detach() - before[k] for k, p in model.named_parameters()}
    return logs, delta, max(d.abs().max().item() for d in delta.values())


@pytest.mark.parametrize('order', ['generators_first', 'discriminators_first'])
@pytest.mark.parametrize('per', [dict(lambda_per=0.1, lambda_per_recon=10.),
                                 dict(lambda_per=1., lambda_per_recon=1., distance='l1')])
def test_perceptual_on_matches_the_step_before(order, per):
    """Same losses (relative 1e-5) under Adam, the release's optimiser; same parameter change (1e-5 of the largest
    change) under SGD. Parameters are not compared after Adam steps: Adam divides by sqrt(v), so where a gradient
    is zero up to rounding (the generator conv biases before an InstanceNorm: ~1e-12, no effect on any output) it
    turns rounding into steps of +-lr, in either version alike."""
    ours, ref = build_pair(per, order)
    (log_ours, ), (log_ref, ) = run_steps(ours, 1), run_steps(ref, 1)
    folded = ours.loss_segmentor()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # the fast path did run, folded
    assert folded.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert set(log_ours) == set(log_ref) and sum(k.startswith('loss_per') for k in log_ref) == 4
    for k, v in log_ref.items():
        assert log_ours[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k

    ours, ref = build_pair(per, order)
    (log_ours, ), d_ours, _ = updates(ours)
    (log_ref, ), d_ref, scale = updates(ref)
    for k, v in log_ref.items():
        assert log_ours[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    for k, d in d_ref.items():
        torch.testing.assert_close(d_ours[k], d, rtol=0, atol=1e-5 * scale, msg=k)
    # the check can fail: the perceptual terms do change the generators' step (against the loss switched off)
    off, _ = build_pair(OFF, order)
    _, d_off, _ = updates(off)
    assert max((d - d_off[k]).abs().max().item() for k, d in d_ref.items() if k.startswith('generators')) > 0.1 * scale


@pytest.mark.parametrize('fast', [dict(fold_bn=True, channels_last=False), dict(fold_bn=False, channels_last=True),
                                  dict(fold_bn=False, channels_last=False)])
def test_each_switch_alone_matches(fast):
    per = dict(lambda_per=0.1, lambda_per_recon=10.)
    ours, ref = build_pair(per, 'generators_first', fast)
    (log_ours, ), (log_ref, ) = run_steps(ours, 1), run_steps(ref, 1)
    for k, v in log_ref.items():
        assert log_ours[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    if fast == dict(fold_bn=False, channels_last=False):
        assert ours.loss_segmentor() is ours.segmentor  # M itself: the step before, bitwise
        assert log_ours == log_ref


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
    ours, _ = build_pair(per, 'generators_first')
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
    assert model._use_channels_last(torch.device('cpu')) and not model._use_channels_last(torch.device('cuda', 0))
