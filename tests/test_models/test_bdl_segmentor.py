# Copyright (c) bdl_mm contributors.
"""BDLSegmentor: one BDL training step (M with D_M, Eq. 1 and 3) on tiny MMSeg modules, CPU only."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import bdl_mm  # noqa: F401  (registers BDLSegmentor, OutputDiscriminator)
from bdl_mm.models.segmentors.mean_teacher import teacher_pseudo_labels

init_default_scope('mmseg')  # as configs do (default_scope = 'mmseg')

CONFIGS = osp.join(osp.dirname(__file__), '..', '..', 'configs')
MEAN = [104.00698793, 116.66876762, 122.67891434]
NUM_CLASSES = 4


def tiny_cfg(**kwargs):
    """BDLSegmentor around a tiny MMSeg EncoderDecoder (ResNet-18 at width 8, frozen BN) and a tiny D_M."""
    cfg = dict(
        type='BDLSegmentor',
        segmentor=dict(
            type='EncoderDecoder',
            data_preprocessor=dict(
                type='SegDataPreProcessor', mean=MEAN, std=[1., 1., 1.], bgr_to_rgb=False, pad_val=0, size_divisor=1,
                seg_pad_val=255),
            backbone=dict(
                type='ResNet', depth=18, stem_channels=8, base_channels=8, strides=(1, 2, 1, 1),
                dilations=(1, 1, 2, 4), out_indices=(2, 3), norm_cfg=dict(type='BN', requires_grad=False),
                norm_eval=True),
            decode_head=dict(
                type='FCNHead', in_channels=64, in_index=1, channels=8, num_convs=1, concat_input=False,
                dropout_ratio=0., num_classes=NUM_CLASSES, norm_cfg=None, align_corners=True,
                loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                                 avg_non_ignore=True)),
            train_cfg=dict(),
            test_cfg=dict(mode='whole')),
        discriminator=dict(type='OutputDiscriminator', in_channels=NUM_CLASSES, base_channels=4),
        lambda_adv=0.001,
        lambda_ssl=1.0)
    cfg.update(kwargs)
    return cfg


def sample(h, w, label=None, weight=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    ds = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
    if label == 'random':
        label = torch.randint(0, NUM_CLASSES, (1, h, w), generator=g)
        label[:, :h // 4] = 255
    if label is not None:
        ds.gt_sem_seg = PixelData(data=label)
    if weight is not None:
        ds.pseudo_weight = PixelData(data=weight)
    return img, ds


def batch(pseudo=None, weight=None):
    """One UDADataset batch (pseudo_collate layout): source 40x48 with labels, target 32x40."""
    s_img, s_ds = sample(40, 48, label='random', seed=1)
    t_img, t_ds = sample(32, 40, label=pseudo, weight=weight, seed=2)
    return dict(source=dict(inputs=[s_img], data_samples=[s_ds]), target=dict(inputs=[t_img], data_samples=[t_ds]))


def sgd_wrappers(model, lr=0.1, dis_lr=0.1):
    return OptimWrapperDict(
        segmentor=OptimWrapper(torch.optim.SGD(model.segmentor.parameters(), lr=lr)),
        discriminator=OptimWrapper(torch.optim.SGD(model.discriminator.parameters(), lr=dis_lr)))


def build(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(ConfigDict(tiny_cfg(**kwargs)))


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_train_step_moves_both_models_and_keeps_frozen_bn():
    model = build()
    model.train()
    bn = model.segmentor.backbone.bn1
    assert not bn.training, 'norm_eval must keep the frozen BN in eval mode after train()'
    buffers = {k: v.clone() for k, v in model.segmentor.backbone.named_buffers() if 'running' in k}
    seg0, dis0 = params(model.segmentor), params(model.discriminator)
    pseudo = torch.randint(0, NUM_CLASSES, (1, 32, 40))
    log = model.train_step(batch(pseudo=pseudo), sgd_wrappers(model))

    assert {'src.decode.loss_ce', 'src.decode.acc_seg', 'tgt.loss_ssl', 'tgt.loss_adv', 'dis.loss_src',
            'dis.loss_tgt'} == set(log)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in log.values())
    seg1, dis1 = params(model.segmentor), params(model.discriminator)
    # every trainable parameter of M (backbone convs, classifier) and of D_M moved
    for k, v in model.segmentor.named_parameters():
        assert v.requires_grad == (not ('bn' in k or 'downsample.1' in k)), k
        assert torch.equal(seg0[k], seg1[k]) != v.requires_grad, k
    assert all(not torch.equal(dis0[k], dis1[k]) for k in dis0)
    # D_M's requires_grad restored after the M step; frozen BN statistics untouched
    assert all(p.requires_grad for p in model.discriminator.parameters())
    for k, v in model.segmentor.backbone.named_buffers():
        if 'running' in k:
            assert torch.equal(v, buffers[k]), k
    # grads are cleared after each update
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize('dropped', ['lambda_adv', 'lambda_ssl', 'source'])
def test_each_loss_family_moves_m(dropped):
    """Removing one of source CE / adversarial / SSL changes M's update: each term reaches M's parameters."""
    pseudo = torch.randint(0, NUM_CLASSES, (1, 32, 40))

    def step(no_source=False, **kwargs):
        model = build(**{'lambda_adv': 1., 'lambda_ssl': 1., **kwargs})  # weights large enough to see
        data = batch(pseudo=pseudo)
        if no_source:
            data['source']['data_samples'][0].gt_sem_seg.data[:] = 255
        model.train_step(data, sgd_wrappers(model, lr=1.))
        return params(model.segmentor)

    full = step()
    ablated = step(no_source=True) if dropped == 'source' else step(**{dropped: 0.})
    assert not torch.allclose(full['decode_head.conv_seg.weight'], ablated['decode_head.conv_seg.weight'])
    assert not torch.allclose(full['backbone.conv1.weight'], ablated['backbone.conv1.weight'])


def test_target_loss_keys_and_ignore():
    model = build()
    log = model.train_step(batch(), sgd_wrappers(model))
    assert 'tgt.loss_ssl' not in log and 'tgt.loss_adv' in log

    model = build()
    log = model.train_step(batch(pseudo=torch.full((1, 32, 40), 255)), sgd_wrappers(model))
    assert log['tgt.loss_ssl'].item() == 0.0  # exactly 0, not NaN


def hand_logits(model, data):
    """Upsampled logits of M for a (source or target) part of a batch, computed without BDLSegmentor."""
    x = torch.stack(data['inputs']).float() - torch.tensor(MEAN).view(1, 3, 1, 1)
    logits = model.segmentor.decode_head(model.segmentor.backbone(x))
    return F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=True)


@pytest.mark.parametrize('labels', [(0., 1.), (1., 0.)])
def test_losses_match_hand_computation(labels):
    """With lr 0 nothing moves: every logged loss must equal the formula evaluated by hand."""
    source_label, target_label = labels
    model = build(source_label=source_label, target_label=target_label, lambda_adv=0.01, lambda_ssl=0.5)
    pseudo = torch.randint(0, NUM_CLASSES, (1, 32, 40), generator=torch.Generator().manual_seed(5))
    pseudo[:, :, :10] = 255
    weight = torch.rand(1, 32, 40, generator=torch.Generator().manual_seed(6))
    data = batch(pseudo=pseudo, weight=weight)
    log = model.train_step(copy.deepcopy(data), sgd_wrappers(model, lr=0., dis_lr=0.))

    with torch.no_grad():
        src, tgt = hand_logits(model, data['source']), hand_logits(model, data['target'])
        d_src = model.discriminator(src.softmax(1))
        d_tgt = model.discriminator(tgt.softmax(1))

    def bce(d, y):  # BCE with logits written out: -[y log s(d) + (1 - y) log(1 - s(d))]
        return -(y * torch.log(torch.sigmoid(d)) + (1 - y) * torch.log(1 - torch.sigmoid(d))).mean()

    torch.testing.assert_close(log['dis.loss_src'], bce(d_src, source_label) / 2)
    torch.testing.assert_close(log['dis.loss_tgt'], bce(d_tgt, target_label) / 2)
    torch.testing.assert_close(log['tgt.loss_adv'], 0.01 * bce(d_tgt, source_label))
    valid = pseudo[0] != 255
    logp = tgt.log_softmax(1)[0]  # (C, H, W)
    ce = -logp.gather(0, pseudo.clamp(max=NUM_CLASSES - 1))[0]
    torch.testing.assert_close(log['tgt.loss_ssl'], 0.5 * (weight[0] * ce)[valid].sum() / valid.sum(),
                               rtol=1e-5, atol=1e-6)
    s_lbl = data['source']['data_samples'][0].gt_sem_seg.data[0]
    s_valid = s_lbl != 255
    s_ce = -src.log_softmax(1)[0].gather(0, s_lbl.clamp(max=NUM_CLASSES - 1)[None])[0]
    torch.testing.assert_close(log['src.decode.loss_ce'], s_ce[s_valid].mean(), rtol=1e-5, atol=1e-6)


def test_discriminator_step_uses_only_its_own_loss():
    """D_M is frozen during M's adversarial step: its update is exactly -lr * grad of the two halved D terms."""
    model = build(lambda_adv=1.)
    data = batch()
    src, tgt = hand_logits(model, data['source']).detach(), hand_logits(model, data['target']).detach()
    dis_ref = copy.deepcopy(model.discriminator)
    d_src, d_tgt = dis_ref(src.softmax(1)), dis_ref(tgt.softmax(1))
    loss = F.binary_cross_entropy_with_logits(d_src, torch.zeros_like(d_src)) / 2 + \
        F.binary_cross_entropy_with_logits(d_tgt, torch.ones_like(d_tgt)) / 2
    loss.backward()
    model.train_step(copy.deepcopy(data), sgd_wrappers(model, lr=0., dis_lr=1.))
    for (name, p), p_ref in zip(model.discriminator.named_parameters(), dis_ref.parameters()):
        torch.testing.assert_close(p.detach(), (p_ref - p_ref.grad).detach(), msg=name)


def test_no_adversarial_ablation_skips_discriminator():
    model = build(adversarial=False)
    dis0 = params(model.discriminator)
    wrapper = OptimWrapper(torch.optim.SGD(model.segmentor.parameters(), lr=0.1))
    log = model.train_step(batch(pseudo=torch.randint(0, NUM_CLASSES, (1, 32, 40))), wrapper)
    assert set(log) == {'src.decode.loss_ce', 'src.decode.acc_seg', 'tgt.loss_ssl'}
    assert all(torch.equal(v, params(model.discriminator)[k]) for k, v in dis0.items())
    # without pseudo labels and without D_M the target is not used at all
    log = build(adversarial=False, discriminator=None).train_step(batch(), wrapper)
    assert set(log) == {'src.decode.loss_ce', 'src.decode.acc_seg'}


def test_build_errors():
    with pytest.raises(ValueError, match=r'in_channels=3 .*4 output classes'):
        build(discriminator=dict(type='OutputDiscriminator', in_channels=3, base_channels=4))
    with pytest.raises(ValueError, match='adversarial=True needs'):
        build(discriminator=None)
    with pytest.raises(ValueError, match='differs from model.segmentor.data_preprocessor'):
        build(data_preprocessor=dict(type='SegDataPreProcessor'))
    # the Runner passes the config's top-level data_preprocessor: the same one, or one for a segmentor without
    dp = tiny_cfg()['segmentor']['data_preprocessor']
    assert build(data_preprocessor=copy.deepcopy(dp)).data_preprocessor.mean.flatten().tolist() == pytest.approx(MEAN)
    seg = tiny_cfg()['segmentor']
    seg.pop('data_preprocessor')
    assert build(segmentor=seg, data_preprocessor=dp).data_preprocessor.mean.flatten().tolist() == pytest.approx(MEAN)
    model = build()
    with pytest.raises(TypeError, match='dict\\(source=..., target=...\\)'):
        model.train_step(dict(target=batch()['target']), sgd_wrappers(model))
    accumulating = OptimWrapperDict(
        segmentor=OptimWrapper(torch.optim.SGD(model.segmentor.parameters(), lr=0.1), accumulative_counts=2),
        discriminator=sgd_wrappers(model)['discriminator'])
    with pytest.raises(ValueError, match='optim_wrapper.segmentor.accumulative_counts must be 1, got 2'):
        model.train_step(batch(), accumulating)
    with pytest.raises(KeyError, match='segmentor and discriminator'):
        model.train_step(batch(), OptimWrapperDict(segmentor=sgd_wrappers(model)['segmentor']))
    with pytest.raises(ValueError, match='pseudo label of shape'):
        model.train_step(batch(pseudo=torch.zeros(1, 16, 20, dtype=torch.long)), sgd_wrappers(model))


def test_plain_source_batch_trains_source_only():
    # M(0) of Algorithm 1: a plain labelled batch, segmentation loss only, D_M untouched
    model = build()
    d_before = params(model.discriminator)
    m_before = params(model.segmentor)
    log = model.train_step(batch()['source'], sgd_wrappers(model))
    assert sorted(k for k in log if not k.startswith('src.')) == []
    assert all(torch.equal(d_before[k], v) for k, v in params(model.discriminator).items())
    assert any(not torch.equal(m_before[k], v) for k, v in params(model.segmentor).items())
    # the segmentor's optimiser alone is enough for source-only training
    log = model.train_step(batch()['source'], OptimWrapperDict(segmentor=sgd_wrappers(model)['segmentor']))
    assert torch.isfinite(log['src.decode.loss_ce'])


def test_inference_delegates_to_segmentor():
    model = build()
    model.eval()
    img, ds = sample(32, 40, label=torch.zeros(1, 32, 40, dtype=torch.long))
    data = dict(inputs=[img], data_samples=[ds])
    ours = model.val_step(copy.deepcopy(data))[0]
    theirs = model.segmentor.val_step(copy.deepcopy(data))[0]
    assert ours.pred_sem_seg.shape == (32, 40)
    assert torch.equal(ours.pred_sem_seg.data, theirs.pred_sem_seg.data)
    torch.testing.assert_close(ours.seg_logits.data, theirs.seg_logits.data)
    assert torch.equal(model.test_step(copy.deepcopy(data))[0].pred_sem_seg.data, theirs.pred_sem_seg.data)
    x = torch.randn(1, 3, 32, 40)
    torch.testing.assert_close(model(x, mode='tensor'), model.segmentor(x, mode='tensor'))
    assert model.data_preprocessor is model.segmentor.data_preprocessor
    keys = set(model.state_dict())
    assert keys and all(k.startswith(('segmentor.', 'discriminator.')) for k in keys)


@pytest.mark.parametrize('schedule,seg_lr,head_mult,bias_mult,dis_lr',
                         [('deeplabv2_sgd_poly', 2.5e-4, 10., 1., 1e-4), ('fcn8s_adam_step', 1e-5, 1., 2., 1e-6)])
def test_schedule_configs_build_optimisers(schedule, seg_lr, head_mult, bias_mult, dis_lr):
    cfg = Config.fromfile(osp.join(CONFIGS, '_base_', 'schedules', f'{schedule}.py'))
    model = build()
    wrappers = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    assert isinstance(wrappers, OptimWrapperDict) and set(wrappers.keys()) == {'segmentor', 'discriminator'}
    assert all(type(w) is OptimWrapper for w in wrappers.values())  # --amp turns each into AmpOptimWrapper
    lr_of = {}
    seg_params = dict(model.segmentor.named_parameters())
    for group in wrappers['segmentor'].optimizer.param_groups:
        for p in group['params']:
            lr_of[next(k for k, v in seg_params.items() if v is p)] = group['lr']
    assert lr_of['backbone.conv1.weight'] == pytest.approx(seg_lr)
    assert lr_of['decode_head.conv_seg.weight'] == pytest.approx(seg_lr * head_mult)
    assert lr_of['decode_head.conv_seg.bias'] == pytest.approx(seg_lr * head_mult * bias_mult)
    assert set(lr_of) == {k for k, v in seg_params.items() if v.requires_grad}  # frozen BN left out
    dis_opt = wrappers['discriminator'].optimizer
    assert type(dis_opt).__name__ == 'Adam' and tuple(dis_opt.param_groups[0]['betas']) == (0.9, 0.99)
    assert [g['lr'] for g in dis_opt.param_groups] == pytest.approx([dis_lr] * len(dis_opt.param_groups))
    n_dis = sum(len(g['params']) for g in dis_opt.param_groups)
    assert n_dis == len(list(model.discriminator.parameters()))
    if schedule == 'deeplabv2_sgd_poly':
        seg_opt = wrappers['segmentor'].optimizer
        assert type(seg_opt).__name__ == 'SGD'
        assert {(g['momentum'], g['weight_decay']) for g in seg_opt.param_groups} == {(0.9, 5e-4)}
    # one scheduler list per optimiser, as Runner.build_param_scheduler builds them
    assert set(cfg.param_scheduler) == {'segmentor', 'discriminator'}
    for name, wrapper in wrappers.items():
        scheds = [PARAM_SCHEDULERS.build(dict(s, end=s.get('end', 80000)), default_args=dict(optimizer=wrapper))
                  for s in cfg.param_scheduler[name]]
        base = [g['lr'] for g in wrapper.optimizer.param_groups]
        for _ in range(10):
            for s in scheds:
                s.step()
        factor = (1 - 10 / 250000)**0.9 if schedule == 'deeplabv2_sgd_poly' else 1.
        for b, g in zip(base, wrapper.optimizer.param_groups):
            assert g['lr'] == pytest.approx(b * factor, rel=1e-6)
    assert cfg.train_cfg.max_iters == 80000 and cfg.train_cfg_ssl.max_iters == 120000


@pytest.mark.skipif(not torch.cuda.is_available(), reason='AmpOptimWrapper needs a GPU')
def test_train_step_with_amp_optim_wrappers():
    from mmengine.optim import AmpOptimWrapper
    model = build().cuda()
    wrappers = OptimWrapperDict(
        segmentor=AmpOptimWrapper(optimizer=torch.optim.SGD(model.segmentor.parameters(), lr=0.1)),
        discriminator=AmpOptimWrapper(optimizer=torch.optim.SGD(model.discriminator.parameters(), lr=0.1)))
    seg0, dis0 = params(model.segmentor), params(model.discriminator)
    log = model.train_step(batch(pseudo=torch.randint(0, NUM_CLASSES, (1, 32, 40))), wrappers)
    assert {'tgt.loss_ssl', 'tgt.loss_adv', 'dis.loss_src', 'dis.loss_tgt'} <= set(log)
    assert all(torch.isfinite(v) for v in log.values())
    assert not torch.equal(seg0['decode_head.conv_seg.weight'], params(model.segmentor)['decode_head.conv_seg.weight'])
    assert any(not torch.equal(v, params(model.discriminator)[k]) for k, v in dis0.items())


def test_label_value_outside_classes_names_value_and_file():
    model = build()
    data = batch()
    label = data['source']['data_samples'][0].gt_sem_seg.data
    label[0, 5, 7] = NUM_CLASSES  # one stray value, not 255
    data['source']['data_samples'][0].set_metainfo(dict(seg_map_path='gta5/labels/00042_labelTrainIds.png'))
    with pytest.raises(ValueError, match=rf'label value {NUM_CLASSES} outside \[0, {NUM_CLASSES}\) and not 255 '
                       r'\(ignore\) in gta5/labels/00042_labelTrainIds.png'):
        model.train_step(data, sgd_wrappers(model))
    # pseudo labels are checked the same way, naming their file
    pseudo = torch.full((1, 32, 40), 255, dtype=torch.long)
    pseudo[0, 0, 0] = 200
    data = batch(pseudo=pseudo)
    data['target']['data_samples'][0].set_metainfo(dict(pseudo_label_path='ssl1/aachen_000000_leftImg8bit.png'))
    with pytest.raises(ValueError, match='label value 200 .* in ssl1/aachen_000000_leftImg8bit.png'):
        model.train_step(data, sgd_wrappers(model))
    # 255 everywhere else is fine
    assert torch.isfinite(model.train_step(batch(pseudo=torch.full((1, 32, 40), 255)), sgd_wrappers(model))[
        'src.decode.loss_ce'])


def test_class_mix_pastes_half_the_source_classes():
    from bdl_mm.models.segmentors.class_mix import class_mix
    torch.manual_seed(0)
    src_img, tgt_img = torch.rand(2, 3, 12, 14), torch.rand(2, 3, 8, 10)
    src_label = torch.randint(0, 5, (2, 12, 14))
    src_label[:, :2] = 255
    tgt_label, tgt_w = torch.randint(0, 5, (2, 8, 10)), torch.full((2, 8, 10), 0.5)
    images, labels, weights, mask = class_mix(src_img, src_label, tgt_img, tgt_label, tgt_w)
    for j in range(2):
        m = mask[j]
        # the pasted pixels are a crop of the source: find it, then check image and labels pixel by pixel
        crops = [(y, x) for y in range(12 - 8 + 1) for x in range(14 - 10 + 1)
                 if torch.equal(labels[j][m], src_label[j, y:y + 8, x:x + 10][m])
                 and torch.equal(images[j][:, m], src_img[j, :, y:y + 8, x:x + 10][:, m])]
        assert crops
        y, x = crops[0]
        crop = src_label[j, y:y + 8, x:x + 10]
        present = set(crop.unique().tolist()) - {255}
        pasted = set(crop[m].unique().tolist())
        assert len(pasted) == (len(present) + 1) // 2 and pasted <= present  # half the classes, rounded up
        assert torch.equal(m, torch.isin(crop, torch.tensor(sorted(pasted))))  # all of each chosen class
        assert torch.equal(labels[j][~m], tgt_label[j][~m]) and torch.equal(images[j][:, ~m], tgt_img[j][:, ~m])
        assert (weights[j][m] == 1).all() and (weights[j][~m] == 0.5).all()
    with pytest.raises(ValueError, match='at least as large'):
        class_mix(tgt_img, tgt_label, src_img, src_label)


def test_class_mix_inverse_area_pastes_small_classes_first():
    """``choice='inverse_area'``: a crop of 80 pixels, class 0 on 76, class 1 on 4, one class of two pasted; class 1
    is drawn with probability (1/4) / (1/4 + 1/76) = 0.95 (uniform: 0.5), over 2,000 draws."""
    from bdl_mm.models.segmentors.class_mix import class_mix
    src_img, tgt_img = torch.rand(1, 3, 8, 10), torch.rand(1, 3, 8, 10)  # same size: the crop is the image
    src_label = torch.zeros(1, 8, 10, dtype=torch.long)
    src_label[0, :2, :2] = 1
    tgt_label = torch.full((1, 8, 10), 7)
    torch.manual_seed(0)
    share = {}
    for choice in ('uniform', 'inverse_area'):
        small = 0
        for _ in range(2000):
            _, labels, _, mask = class_mix(src_img, src_label, tgt_img, tgt_label, choice=choice)
            assert mask.sum() in (4, 76)  # one whole class, never both
            small += int(mask.sum() == 4)
        share[choice] = small / 2000
    assert abs(share['uniform'] - 0.5) < 0.04 and abs(share['inverse_area'] - 0.95) < 0.015
    with pytest.raises(ValueError, match="choice must be one of"):
        class_mix(src_img, src_label, tgt_img, tgt_label, choice='rare')
    with pytest.raises(ValueError, match="choice must be one of"):
        build(class_mix=True, class_mix_choice='rare')
    assert build(class_mix=True, class_mix_choice='inverse_area').class_mix_choice == 'inverse_area'


def test_class_mix_switch_trains_on_the_mixed_target():
    pseudo = torch.randint(0, NUM_CLASSES, (1, 32, 40))
    off, on = build(lambda_adv=1.), build(lambda_adv=1., class_mix=True)
    seg0 = params(on.segmentor)
    log_off = off.train_step(batch(pseudo=pseudo), sgd_wrappers(off, lr=0.))
    torch.manual_seed(1)
    log_on = on.train_step(batch(pseudo=pseudo), sgd_wrappers(on, lr=0.))
    assert set(log_on) == set(log_off)  # the same loss terms
    # D_M's term sees the plain target (same value), the SSL term the mixed one (another value)
    torch.testing.assert_close(log_on['tgt.loss_adv'], log_off['tgt.loss_adv'])
    assert not torch.isclose(log_on['tgt.loss_ssl'], log_off['tgt.loss_ssl'])
    # the SSL term is the CE of M on the mixed batch, rebuilt from the same random draws
    from bdl_mm.models.segmentors.class_mix import class_mix
    data = on.data_preprocessor(batch(pseudo=pseudo)['source'], True)
    tgt = on.data_preprocessor(batch(pseudo=pseudo)['target'], True)
    torch.manual_seed(1)
    images, labels, _, _ = class_mix(data['inputs'], data['data_samples'][0].gt_sem_seg.data.long(),
                                     tgt['inputs'], pseudo)
    with torch.no_grad():
        logits = F.interpolate(on.segmentor(images, None, mode='tensor'), size=(32, 40), mode='bilinear',
                               align_corners=True)
    torch.testing.assert_close(log_on['tgt.loss_ssl'], F.cross_entropy(logits, labels, ignore_index=255),
                               rtol=1e-5, atol=1e-6)
    on.train_step(batch(pseudo=pseudo), sgd_wrappers(on, lr=0.1))
    assert any(not torch.equal(v, params(on.segmentor)[k]) for k, v in seg0.items())  # and M learns from it


def test_class_mix_trains_the_auxiliary_heads_on_the_mixed_target():
    aux = dict(type='FCNHead', in_channels=32, in_index=0, channels=8, num_convs=1, concat_input=False,
               dropout_ratio=0., num_classes=NUM_CLASSES, norm_cfg=None, align_corners=True,
               loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4, avg_non_ignore=True))
    cfg = tiny_cfg(class_mix=True)
    cfg['segmentor']['auxiliary_head'] = aux
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg))
    head0 = params(model.segmentor.auxiliary_head)
    wrappers = OptimWrapperDict(
        segmentor=OptimWrapper(torch.optim.SGD(model.segmentor.parameters(), lr=0.1)),
        discriminator=OptimWrapper(torch.optim.SGD(model.discriminator.parameters(), lr=0.1)))
    log = model.train_step(batch(pseudo=torch.randint(0, NUM_CLASSES, (1, 32, 40))), wrappers)
    assert {'tgt.loss_ssl', 'tgt.loss_ssl_aux', 'tgt.loss_adv'} <= set(log) and log['tgt.loss_ssl_aux'] > 0
    assert any(not torch.equal(v, params(model.segmentor.auxiliary_head)[k]) for k, v in head0.items())


# ---- the mean-teacher switch (model.mean_teacher, DACS's online pseudo labels)
def test_teacher_labels_are_the_argmax_weighted_by_each_image_s_confident_fraction():
    # image 0: 4 pixels, probabilities of the top class 0.9, 0.9, 0.6, 0.5 (two classes, logit gaps by hand)
    gap = torch.log(torch.tensor([0.9 / 0.1, 0.1 / 0.9, 0.6 / 0.4, 1.0]))  # class 0 minus class 1
    logits = torch.zeros(2, 2, 2, 2)
    logits[0, 0] = gap.view(2, 2)
    logits[1, 1] = 5.  # image 1: class 1 everywhere, p = 0.993
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    valid[1, 1] = False  # image 1's bottom row is padding
    labels, weights = teacher_pseudo_labels(logits, 0.8, valid)
    assert labels[0].tolist() == [[0, 1], [0, 0]]  # a tie goes to the first class (torch's max)
    assert labels[1].tolist() == [[1, 1], [255, 255]]
    torch.testing.assert_close(weights[0], torch.full((2, 2), 0.5))  # 2 of 4 pixels reach 0.8
    torch.testing.assert_close(weights[1], torch.full((2, 2), 1.0))  # both valid pixels do; padding not counted
    _, weights = teacher_pseudo_labels(logits, 0.95)
    assert weights[0, 0, 0] == 0. and weights[1, 0, 0] == 1.
    with pytest.raises(ValueError, match='confidence'):
        teacher_pseudo_labels(logits, 0.)


def test_the_teacher_starts_from_the_loaded_weights_and_its_labels_replace_the_files():
    model = build(mean_teacher=dict(momentum=0.25, confidence=1e-6), lambda_adv=0.)
    with torch.no_grad():  # weights loaded after construction (a stage's load_from): the teacher must follow them
        for p in model.segmentor.parameters():
            p.add_(0.05 * torch.randn_like(p))
    student0 = params(model.segmentor)
    files = torch.full((1, 32, 40), NUM_CLASSES - 1)  # the file's labels: the last class everywhere
    log = model.train_step(batch(pseudo=files), sgd_wrappers(model, lr=0., dis_lr=0.))
    assert int(model.teacher.steps) == 1
    for k, v in params(model.teacher.module).items():
        assert torch.equal(v, student0[k]), k  # the first update copies M
    # the SSL term is M's CE against its own (= the teacher's) argmax, weight 1 (every pixel confident): not the file's
    # (the teacher labels in eval mode; M trains in the mode it is in)
    data = model.data_preprocessor(batch()['target'], True)

    def up(segmentor):
        with torch.no_grad():
            return F.interpolate(segmentor(data['inputs'], None, mode='tensor'), size=(32, 40), mode='bilinear',
                                 align_corners=True)
    student = up(model.segmentor)
    labels = up(model.segmentor.eval()).argmax(1)
    model.segmentor.train()
    torch.testing.assert_close(log['tgt.loss_ssl'], F.cross_entropy(student, labels), rtol=1e-5, atol=1e-6)
    assert (labels != files).float().mean() > 0.5  # M's classes are not the file's
    assert not torch.isclose(log['tgt.loss_ssl'], F.cross_entropy(student, files))
    assert log['tgt.teacher_confident'] == 1.


def test_the_teacher_is_an_exponential_moving_average_of_m():
    model = build(mean_teacher=dict(momentum=0.25))
    wrappers = sgd_wrappers(model, lr=0.5)
    pseudo = torch.randint(0, NUM_CLASSES, (1, 32, 40))
    model.train_step(batch(pseudo=pseudo), wrappers)  # teacher = M before the step; M moves
    teacher1, student1 = params(model.teacher.module), params(model.segmentor)
    assert any(not torch.equal(teacher1[k], v) for k, v in student1.items())
    model.train_step(batch(pseudo=pseudo), wrappers)
    for k, v in params(model.teacher.module).items():
        torch.testing.assert_close(v, 0.75 * teacher1[k] + 0.25 * student1[k])
    assert int(model.teacher.steps) == 2


def test_the_teacher_round_trips_through_a_checkpoint_and_is_absent_without_the_switch():
    model = build(mean_teacher=dict(momentum=0.25))
    model.train_step(batch(pseudo=torch.randint(0, NUM_CLASSES, (1, 32, 40))), sgd_wrappers(model, lr=0.5))
    model.train_step(batch(), sgd_wrappers(model, lr=0.5))  # an adversarial-only step updates it too
    state = model.state_dict()
    assert int(state['teacher.steps']) == 2
    other = build(mean_teacher=dict(momentum=0.25))
    other.load_state_dict(state)
    assert int(other.teacher.steps) == 2
    for k, v in params(model.teacher.module).items():
        assert torch.equal(v, params(other.teacher.module)[k])
    assert not any(k.startswith('teacher.') for k in build().state_dict())  # the release's model is unchanged
    # the optimiser of M does not see the teacher
    assert all(not p.requires_grad for p in model.teacher.parameters())


@pytest.mark.parametrize('setting, match', [(dict(momentum=1.), 'momentum'), (dict(confidence=0.), 'confidence'),
                                            (dict(alpha=0.99), 'takes momentum and confidence')])
def test_bad_mean_teacher_settings_are_refused(setting, match):
    with pytest.raises(ValueError, match=match):
        build(mean_teacher=setting)
