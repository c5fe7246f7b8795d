# Copyright (c) bdl_mm contributors.
"""PerceptualCycleGAN (F, BDL Eq. 2): perceptual loss, frozen M, train_step, equivalence with MMagic's CycleGAN,
build-time checks; UnpairedTranslationDataset + the translation config's pipeline."""
import copy
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmagic.models.editors.cyclegan import CycleGAN
from mmagic.structures import DataSample
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import DefaultScope
from toy_helpers import gan_cfg

import bdl_mm  # noqa: F401
from bdl_mm.datasets.unpaired_translation_dataset import UnpairedTranslationDataset
from bdl_mm.models.translators import PerceptualCycleGAN

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CAFFE_MEAN = [104.00698793, 116.66876762, 122.67891434]
KEYS = ['img_source', 'img_target']


def tiny_seg_cfg(num_classes=5, mean=CAFFE_MEAN, bgr_to_rgb=False):
    """A tiny MMSeg EncoderDecoder (one ResNet stage with 4 channels + FCN head)."""
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=mean, std=[1., 1., 1.], bgr_to_rgb=bgr_to_rgb),
        backbone=dict(type='ResNet', depth=18, num_stages=1, strides=(1, ), dilations=(1, ), out_indices=(0, ),
                      base_channels=4, stem_channels=4),
        decode_head=dict(type='FCNHead', in_channels=4, channels=4, num_convs=1, concat_input=False,
                         num_classes=num_classes, loss_decode=dict(type='CrossEntropyLoss')),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def build_model(per=dict(lambda_per=0.1, lambda_per_recon=10.), seg=None, seg_input=None, **kwargs):
    seg = dict(config=tiny_seg_cfg(), checkpoint=None, num_classes=5) if seg is None else seg
    torch.manual_seed(0)
    return PerceptualCycleGAN(**gan_cfg(**kwargs), segmentor=seg, seg_input=seg_input, perceptual_loss=per)


def make_batch(n=1, size=32, seed=0):
    """A collated batch in the format of the pipeline's PackInputs(keys=KEYS, data_keys=KEYS) + pseudo_collate."""
    rng = np.random.RandomState(seed)
    inputs, samples = [], []
    for _ in range(n):
        imgs = {k: torch.from_numpy(rng.randint(0, 256, (3, size, size), dtype=np.uint8)) for k in KEYS}
        sample = DataSample(metainfo={f'{k}_channel_order': 'bgr' for k in KEYS})
        sample.set_tensor_data(dict(imgs))
        inputs.append(imgs)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def optim(model, lr=1e-3):
    return OptimWrapperDict(
        generators=OptimWrapper(torch.optim.Adam(model.generators.parameters(), lr=lr, betas=(0.5, 0.999))),
        discriminators=OptimWrapper(torch.optim.Adam(model.discriminators.parameters(), lr=lr, betas=(0.5, 0.999))))


@pytest.fixture(autouse=True)
def _iter_zero():
    MessageHub.get_current_instance().update_info('iter', 0)


def clone_params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_perceptual_loss_zero_for_identical_and_positive_otherwise():
    model = build_model()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    for distance in ('mse_instance_norm', 'l1'):
        model.distance = distance
        same = dict(real_source=x, fake_target=x, cycle_source=x, real_target=y, fake_source=y, cycle_target=y)
        losses = model._get_perceptual_loss(same)
        assert set(losses) == {'loss_per_source', 'loss_per_recon_source', 'loss_per_target', 'loss_per_recon_target'}
        assert all(v.item() == 0 for v in losses.values()), losses
        other = dict(real_source=x, fake_target=y, cycle_source=y.flip(-1), real_target=y, fake_source=x,
                     cycle_target=x.flip(-1))
        losses = model._get_perceptual_loss(other)
        assert all(v.item() > 0 for v in losses.values()), losses
        # hand-computed: weight * distance between M's logits of the converted images
        with torch.no_grad():
            lx, ly = (model.segmentor(model.to_seg_input(t), mode='tensor') for t in (x, y))
        if distance == 'l1':
            expected = 0.1 * (ly - lx).abs().mean()
        else:
            def inorm(t):
                mu, var = t.mean((2, 3), keepdim=True), t.var((2, 3), unbiased=False, keepdim=True)
                return (t - mu) / torch.sqrt(var + 1e-5)
            expected = 0.1 * ((inorm(ly) - inorm(lx))**2).mean()
        assert torch.allclose(losses['loss_per_source'], expected, rtol=1e-5, atol=1e-7)


def test_seg_input_conversion_from_config():
    model = build_model()
    img = torch.tensor([-1., 0., 1.]).view(1, 3, 1, 1)  # generator RGB: R=0, G=127.5, B=255 in pixels
    expected = torch.tensor([255 - CAFFE_MEAN[0], 127.5 - CAFFE_MEAN[1], 0 - CAFFE_MEAN[2]]).view(1, 3, 1, 1)
    assert torch.allclose(model.to_seg_input(img), expected, atol=1e-4)
    # An RGB-fed M with its own mean: the same image, no channel swap
    rgb = build_model(seg=dict(config=tiny_seg_cfg(mean=[1., 2., 3.], bgr_to_rgb=True), num_classes=5),
                      seg_input=dict(mean=[1., 2., 3.], std=[1., 1., 1.], channel_order='RGB'))
    assert torch.allclose(rgb.to_seg_input(img), torch.tensor([-1., 125.5, 252.]).view(1, 3, 1, 1), atol=1e-4)


def test_segmentor_frozen_while_generators_learn():
    model = build_model()
    seg = model.segmentor
    assert not any(k.startswith('segmentor') for k in model.state_dict())
    assert {id(p) for p in model.parameters()}.isdisjoint({id(p) for p in seg.parameters()})
    model.train()
    assert not seg.training
    seg_before, gen_before = clone_params(seg), clone_params(model.generators)
    data = make_batch()
    log_vars = model.train_step(data, optim(model))
    assert all(p.grad is None and not p.requires_grad for p in seg.parameters())
    assert all(torch.equal(seg_before[k], v) for k, v in seg.named_parameters())
    assert not seg.training
    assert any(not torch.equal(gen_before[k], v) for k, v in model.generators.named_parameters())
    # the perceptual gradient reaches the generators through M
    model.zero_grad()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    fake = model.generators['target'](x)
    outs = dict(real_source=x, fake_target=fake, cycle_source=model.generators['source'](fake),
                real_target=x, fake_source=x, cycle_target=x)
    sum(model._get_perceptual_loss(outs).values()).backward()
    assert model.generators['target'].model[0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in seg.parameters())
    for key in ('loss_per_source', 'loss_per_recon_source', 'loss_per_target', 'loss_per_recon_target'):
        assert key in log_vars and log_vars[key] > 0


def test_train_step_updates_generators_and_discriminators():
    model = build_model()
    gen, disc = clone_params(model.generators), clone_params(model.discriminators)
    log_vars = model.train_step(make_batch(n=2), optim(model))
    for before, module in ((gen, model.generators), (disc, model.discriminators)):
        changed = [k for k, v in module.named_parameters() if not torch.equal(before[k], v)]
        assert len(changed) == len(before), f'unchanged: {set(before) - set(changed)}'
    for key in ('loss_gan_d_source', 'loss_gan_d_target', 'loss_gan_g_source', 'cycle_loss', 'id_loss', 'loss'):
        assert np.isfinite(float(log_vars[key]))
    per = sum(float(log_vars[k]) for k in log_vars if k.startswith('loss_per'))
    base = sum(float(log_vars[k]) for k in ('loss_gan_g_source', 'loss_gan_g_target', 'cycle_loss', 'id_loss'))
    assert float(log_vars['loss']) == pytest.approx(base + per, rel=1e-5)


def _mmagic_cyclegan():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmagic'):
        return CycleGAN(**gan_cfg())


def test_zero_weights_give_exactly_mmagic_cyclegan():
    ours = build_model(per=dict(lambda_per=0., lambda_per_recon=0.))
    ref = _mmagic_cyclegan()
    ours.load_state_dict(ref.state_dict(), strict=True)  # M is not in the state dict: keys match exactly
    data = make_batch(n=2)
    log_ours = ours.train_step(copy.deepcopy(data), optim(ours))
    log_ref = ref.train_step(copy.deepcopy(data), optim(ref))
    assert set(log_ours) == set(log_ref)
    assert all(float(log_ours[k]) == float(log_ref[k]) for k in log_ref), (log_ours, log_ref)
    ref_params = dict(ref.named_parameters())
    assert all(torch.equal(v, ref_params[k]) for k, v in ours.named_parameters())
    # with the perceptual loss on, MMagic's own terms are unchanged and the total grows by the new terms
    ours = build_model()
    ours.load_state_dict(_mmagic_cyclegan().state_dict())
    log_per = ours.train_step(copy.deepcopy(data), optim(ours))
    assert all(float(log_per[k]) == float(log_ref[k]) for k in log_ref if k != 'loss')
    assert float(log_per['loss']) > float(log_ref['loss'])


def test_batch_modes_agree():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    results = {}
    for mode in ('split', 'joint', 'none'):
        model = build_model(per=dict(lambda_per=0.1, lambda_per_recon=10., batch_mode=mode))
        fake = model.generators['target'](x)
        outs = dict(real_source=x, fake_target=fake, cycle_source=model.generators['source'](fake),
                    real_target=x.flip(-1), fake_source=model.generators['source'](x.flip(-1)), cycle_target=fake)
        losses = model._get_perceptual_loss(outs)
        sum(losses.values()).backward()
        results[mode] = ({k: v.item() for k, v in losses.items()},
                         model.generators['target'].model[0].conv.weight.grad.clone())
    for mode in ('joint', 'none'):
        assert results[mode][0] == pytest.approx(results['split'][0], rel=1e-5)
        assert torch.allclose(results[mode][1], results['split'][1], rtol=1e-4, atol=1e-7)


def test_init_weights_release_init():
    model = build_model()
    seg_before = clone_params(model.segmentor)
    model.init_weights()  # the runner calls it; MMagic 1.2.0's CycleGAN version raises UnboundLocalError
    for nets in (model.generators, model.discriminators):
        for name, p in nets.named_parameters():
            if name.endswith('weight') and p.dim() == 4 and p.numel() > 500:
                assert 0.015 < p.std().item() < 0.025, name  # normal init, gain 0.02
    assert all(torch.equal(seg_before[k], v) for k, v in model.segmentor.named_parameters())


def test_to_moves_segmentor():
    model = build_model().double()
    assert all(p.dtype == torch.float64 for p in model.segmentor.parameters())
    assert model._seg_scale.dtype == torch.float64


def test_bad_segmentor_fails_at_build(tmp_path):
    with pytest.raises(ValueError, match=r'predicts 5 classes but model.segmentor.num_classes is 19'):
        build_model(seg=dict(config=tiny_seg_cfg(5), num_classes=19))
    with pytest.raises(ValueError, match=r'seg_input .*mean=\[0.0, 0.0, 0.0\].*does not match.*mean=\[104.0069'):
        build_model(seg_input=dict(mean=[0., 0., 0.], std=[1., 1., 1.], channel_order='BGR'))
    with pytest.raises(ValueError, match=r'channel_order=RGB\) does not match.*channel_order=BGR'):
        build_model(seg_input=dict(mean=CAFFE_MEAN, std=[1., 1., 1.], channel_order='RGB'))
    with pytest.raises(ValueError, match='no segmentor'):
        PerceptualCycleGAN(**gan_cfg(), segmentor=None)
    with pytest.raises(ValueError, match='no segmentor'):  # missing keys take the release weights (on)
        PerceptualCycleGAN(**gan_cfg(), segmentor=None, perceptual_loss=dict(distance='l1'))
    plain = PerceptualCycleGAN(**gan_cfg(), segmentor=None, perceptual_loss=None)  # translation only
    assert plain.segmentor is None and not plain.with_perceptual
    with pytest.raises(ValueError, match=r"distance must be one of \('mse_instance_norm', 'l1'\), got 'l2'"):
        build_model(per=dict(distance='l2'))
    # a checkpoint trained for 7 classes does not fit a 5-class config
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import MODELS
        other = MODELS.build(tiny_seg_cfg(7))
    path = str(tmp_path / 'm7.pth')
    torch.save(dict(state_dict=other.state_dict()), path)
    with pytest.raises(ValueError, match=r'm7.pth does not fit the segmentor config.*conv_seg'):
        build_model(seg=dict(config=tiny_seg_cfg(5), checkpoint=path, num_classes=5))


def test_segmentor_from_bdl_checkpoint_and_config_file(tmp_path):
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import MODELS
        torch.manual_seed(1)
        trained = MODELS.build(tiny_seg_cfg(5))
    state = {f'segmentor.{k}': v for k, v in trained.state_dict().items()}
    state['discriminator.conv1.weight'] = torch.zeros(1)
    path = str(tmp_path / 'bdl.pth')
    torch.save(dict(state_dict=state, meta=dict()), path)
    cfg_path = tmp_path / 'm.py'
    cfg_path.write_text(f'model = {tiny_seg_cfg(5)!r}\n')
    model = build_model(seg=dict(config=str(cfg_path), checkpoint=path, num_classes=5))
    for k, v in trained.state_dict().items():
        assert torch.equal(model.segmentor.state_dict()[k], v), k


def _write_images(folder, names, size):
    rng = np.random.RandomState(0)
    for name in names:
        path = osp.join(folder, name)
        os.makedirs(osp.dirname(path), exist_ok=True)
        cv2.imwrite(path, rng.randint(0, 256, size + (3, ), dtype=np.uint8))


def test_unpaired_dataset_and_translation_config(tmp_path):
    _write_images(str(tmp_path / 'gta5/images'), ['00001.png', '00002.png', '00003.png'], (40, 80))
    _write_images(str(tmp_path / 'cityscapes/leftImg8bit/train'),
                  ['aachen/a_000000_000019_leftImg8bit.png', 'bremen/b_000000_000019_leftImg8bit.png',
                   'bremen/b_000000_000019_gtFine_labelIds.png'], (32, 64))
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py'))
    assert cfg.model.segmentor.config.endswith('configs/_base_/models/deeplabv2_r101.py')
    assert osp.isfile(cfg.model.segmentor.config)
    # per-epoch decay as pytorch-CycleGAN (full check in test_fidelity.py::test_f_lr_schedule_as_release)
    assert cfg.param_scheduler.generators[0].begin == 8 and cfg.train_cfg.max_epochs == 20
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.source.data_root = str(tmp_path / 'gta5')
    ds_cfg.target.data_root = str(tmp_path / 'cityscapes')
    for t in ds_cfg.pipeline:  # reduced sizes: width 64, crop 32
        if t.type.endswith('ScaleWidth'):
            t.width = 64
        if t.type.endswith('Crop'):
            t.crop_size = (32, 32)
    ds_cfg.pop('type')
    ds = UnpairedTranslationDataset(**ds_cfg)
    assert len(ds) == 3 and ds.len_b == 2  # the gtFine file is not an image of the set
    sample = ds[1]
    assert sample['inputs']['img_source'].shape == (3, 32, 32)
    assert sample['data_samples'].metainfo['img_source_path'].endswith('00002.png')
    # the whole-image resize keeps the ratio with the width at 64 (pytorch-CycleGAN scale_width)
    resize = [t for t in ds.pipeline.transforms if type(t).__name__ == 'ScaleWidth'][0]
    out = resize(dict(img_source=np.zeros((40, 80, 3), np.uint8), img_target=np.zeros((32, 64, 3), np.uint8)))
    assert out['img_source'].shape == (32, 64, 3) and out['img_target'].shape == (32, 64, 3)
    # the experiment's model config with a tiny generator/M trains one step on the dataset's batches
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('type')
    model_cfg.generator.update(base_channels=4, num_blocks=1)
    model_cfg.discriminator.update(base_channels=4)
    model_cfg.segmentor = dict(config=tiny_seg_cfg(19), checkpoint=None, num_classes=19)
    model = PerceptualCycleGAN(**model_cfg)
    log_vars = model.train_step(pseudo_collate([ds[0], ds[2]]), optim(model))
    assert log_vars['loss_per_recon_target'] > 0
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match=r'no \*.png image under .*empty'):
        UnpairedTranslationDataset(source=dict(data_root=str(tmp_path / 'empty')), target=ds_cfg.target)


def test_release_update_order_generators_then_discriminators():
    """update_order='generators_first' against pytorch-CycleGAN's optimize_parameters, written out here."""
    off = dict(lambda_per=0., lambda_per_recon=0.)
    model = build_model(per=off, update_order='generators_first')
    assert build_model(per=off).update_order == 'discriminators_first'  # default: MMagic's train_step (bitwise)
    data = make_batch(n=2)
    inputs = model.data_preprocessor(copy.deepcopy(data), True)['inputs']
    A, B = inputs['img_source'], inputs['img_target']  # A = source (GTA5), B = target
    G_AB, G_BA = copy.deepcopy(model.generators['target']), copy.deepcopy(model.generators['source'])
    D_B, D_A = copy.deepcopy(model.discriminators['target']), copy.deepcopy(model.discriminators['source'])
    opt_G = torch.optim.Adam([*G_AB.parameters(), *G_BA.parameters()], lr=1e-3, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam([*D_B.parameters(), *D_A.parameters()], lr=1e-3, betas=(0.5, 0.999))
    mse, l1 = torch.nn.functional.mse_loss, torch.nn.functional.l1_loss
    # forward
    fake_B, fake_A = G_AB(A), G_BA(B)
    rec_A, rec_B = G_BA(fake_B), G_AB(fake_A)
    # G_A and G_B (D frozen): LSGAN, cycle x10, identity x 0.5 x 10
    for p in [*D_A.parameters(), *D_B.parameters()]:
        p.requires_grad_(False)
    pred_B, pred_A = D_B(fake_B), D_A(fake_A)
    loss_G = (mse(pred_B, torch.ones_like(pred_B)) + mse(pred_A, torch.ones_like(pred_A))
              + 10 * (l1(rec_A, A) + l1(rec_B, B)) + 5 * (l1(G_AB(B), B) + l1(G_BA(A), A)))
    opt_G.zero_grad()
    loss_G.backward()
    opt_G.step()
    # D_A and D_B on the same generated images (pool: empty, returns them), each term halved
    for p in [*D_A.parameters(), *D_B.parameters()]:
        p.requires_grad_(True)
    loss_D = 0.
    for D, real, fake in ((D_B, B, fake_B), (D_A, A, fake_A)):
        pr, pf = D(real), D(fake.detach())
        loss_D = loss_D + 0.5 * (mse(pr, torch.ones_like(pr)) + mse(pf, torch.zeros_like(pf)))
    opt_D.zero_grad()
    loss_D.backward()
    opt_D.step()

    model.train_step(copy.deepcopy(data), optim(model))
    refs = dict(generators=dict(target=G_AB, source=G_BA), discriminators=dict(target=D_B, source=D_A))
    for kind, nets in refs.items():
        for domain, net in nets.items():
            ours = dict(getattr(model, kind)[domain].named_parameters())
            for name, p in net.named_parameters():
                torch.testing.assert_close(ours[name], p, atol=1e-6, rtol=1e-5, msg=f'{kind}.{domain}.{name}')
    # MMagic's order (D first, then G against the updated D) gives other generator weights
    mm = build_model(per=off)
    mm.train_step(copy.deepcopy(data), optim(mm))
    assert any((p - dict(mm.generators.named_parameters())[n]).abs().max() > 1e-7
               for n, p in model.generators.named_parameters())
    with pytest.raises(ValueError, match='update_order must be one of'):
        build_model(per=off, update_order='random')
