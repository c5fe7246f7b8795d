"""Release fidelity (docs/fidelity.md): every behaviour of the published release that the flagship configs reproduce,
checked against functional re-implementations written from the release's description (never the converters' own
inverse): the published two-branch classifier on a file laid out like a released checkpoint, BatchNorm, PIL
resizing, F's scale_width / batch / update order / lr schedule, translation scale, and the order of softmax and
upsampling in evaluation and SSL."""
import copy
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from PIL import Image
from toy_helpers import ROOT, load_tool

import bdl_mm  # noqa: F401  (registers the modules)
from bdl_mm.models.decode_heads.deeplabv2_head import check_classifier_checkpoint

bdl_release = load_tool('model_converters/bdl_release.py')

R101 = (3, 4, 23, 3)
DILATIONS = (6, 12, 18, 24)


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(copy.deepcopy(cfg))


def config(rel):
    return Config.fromfile(osp.join(ROOT, 'configs', rel))


# ------------------------------------------------------------------ the release's DeepLab, written from its code
def release_state_dict(layers=R101, num_classes=19, trained_branches=2, seed=0):
    """Keys and shapes of the release's ResNet101 (model/deeplab.py), laid out as its .pth files (no
    num_batches_tracked), with values of a trained model, except classifier branches >= ``trained_branches``,
    which keep the release's initialisation: weights N(0, 0.01), biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    g = torch.Generator().manual_seed(seed)

    def conv(cout, cin, k):
        return torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k))**0.5

    def bn(prefix, c):
        sd[prefix + '.weight'] = torch.rand(c, generator=g) * 0.5 + 0.75
        sd[prefix + '.bias'] = torch.randn(c, generator=g) * 0.1
        sd[prefix + '.running_mean'] = torch.randn(c, generator=g) * 0.1
        sd[prefix + '.running_var'] = torch.rand(c, generator=g) + 0.5

    sd = {'conv1.weight': conv(64, 3, 7)}
    bn('bn1', 64)
    inplanes = 64
    for li, blocks in enumerate(layers, 1):
        planes = 64 * 2**(li - 1)
        for b in range(blocks):
            p = f'layer{li}.{b}'
            sd[p + '.conv1.weight'] = conv(planes, inplanes, 1)
            bn(p + '.bn1', planes)
            sd[p + '.conv2.weight'] = conv(planes, planes, 3)
            bn(p + '.bn2', planes)
            sd[p + '.conv3.weight'] = conv(planes * 4, planes, 1) * 0.2
            bn(p + '.bn3', planes * 4)
            if b == 0:
                sd[p + '.downsample.0.weight'] = conv(planes * 4, inplanes, 1)
                bn(p + '.downsample.1', planes * 4)
            inplanes = planes * 4
    bound = 1 / (inplanes * 9)**0.5
    for i in range(len(DILATIONS)):
        if i < trained_branches:
            sd[f'layer5.conv2d_list.{i}.weight'] = torch.randn(num_classes, inplanes, 3, 3, generator=g) * 0.05
            sd[f'layer5.conv2d_list.{i}.bias'] = torch.randn(num_classes, generator=g) * 0.1
        else:
            sd[f'layer5.conv2d_list.{i}.weight'] = torch.randn(num_classes, inplanes, 3, 3, generator=g) * 0.01
            sd[f'layer5.conv2d_list.{i}.bias'] = (torch.rand(num_classes, generator=g) * 2 - 1) * bound
    return sd


def release_forward(sd, x, layers=R101, summed=2):
    """The published forward (``phase != 'train'``: logits at 1/8), BatchNorm with running statistics (eval):
    caffe-style bottlenecks (stride on the first 1x1 conv), layer strides 1-2-1-1, dilations 1-1-2-4, 3x3/2
    max-pool with ceil mode, classifier = sum of the first ``summed`` dilated 3x3 convs."""
    def bn(t, p):
        return F.batch_norm(t, sd[p + '.running_mean'], sd[p + '.running_var'], sd[p + '.weight'], sd[p + '.bias'],
                            False, 0.0, 1e-5)

    x = F.relu(bn(F.conv2d(x, sd['conv1.weight'], stride=2, padding=3), 'bn1'))
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    for li, (blocks, stride, dil) in enumerate(zip(layers, (1, 2, 1, 1), (1, 1, 2, 4)), 1):
        for b in range(blocks):
            p, s = f'layer{li}.{b}', (stride if b == 0 else 1)
            out = F.relu(bn(F.conv2d(x, sd[p + '.conv1.weight'], stride=s), p + '.bn1'))
            out = F.relu(bn(F.conv2d(out, sd[p + '.conv2.weight'], padding=dil, dilation=dil), p + '.bn2'))
            out = bn(F.conv2d(out, sd[p + '.conv3.weight']), p + '.bn3')
            res = bn(F.conv2d(x, sd[p + '.downsample.0.weight'], stride=s), p + '.downsample.1') if b == 0 else x
            x = F.relu(out + res)
    return sum(F.conv2d(x, sd[f'layer5.conv2d_list.{i}.weight'], sd[f'layer5.conv2d_list.{i}.bias'], padding=d,
                        dilation=d) for i, d in enumerate(DILATIONS[:summed]))


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    """A released DeepLab file (untrained branches 3-4), converted with the default options."""
    tmp = tmp_path_factory.mktemp('release')
    sd = release_state_dict()
    torch.save(sd, tmp / 'GTA5_deeplab.pth')
    bdl_release.main([str(tmp / 'GTA5_deeplab.pth'), str(tmp / 'converted.pth')])
    x = torch.randn(1, 3, 41, 57, generator=torch.Generator().manual_seed(3)) * 50
    with torch.no_grad():
        ref = release_forward(sd, x)
    return dict(sd=sd, path=str(tmp / 'converted.pth'), x=x, ref=ref)


def m_of(rel):
    """The M config of a config file: a plain segmentor, BDLSegmentor's segmentor or F's perceptual M."""
    cfg = config(rel)
    if cfg.model.type == 'BDLSegmentor':
        return cfg.model.segmentor
    if 'PerceptualCycleGAN' in cfg.model.type:
        return Config.fromfile(cfg.model.segmentor.config).model
    return cfg.model


@pytest.mark.parametrize('rel', [
    'bdl_gta5.py', 'bdl_synthia.py', 'm/deeplabv2_r101_gta5_source_only.py', 'm/deeplabv2_r101_cityscapes_oracle.py',
    'm/bdl_deeplabv2_r101_gta5_adv.py', 'translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py'])
def test_released_deeplab_gives_published_forward(rel, released):
    m_cfg = m_of(rel)
    check_classifier_checkpoint(m_cfg, released['path'])  # fits: no error
    if rel.startswith('translation/'):
        from bdl_mm.models.translators.frozen_segmentor import build_frozen_segmentor
        model = build_frozen_segmentor(m_cfg, released['path'])  # strict loading inside
    else:
        model = build(m_cfg).eval()
        load_checkpoint(model, released['path'], strict=True, logger='silent')  # all of M's weights loaded
    with torch.no_grad():
        out = model(released['x'], mode='tensor')
    assert out.shape == released['ref'].shape == (1, 19, 6, 8)
    assert rel_diff(out, released['ref']) < 1e-5


def test_four_branch_switch_differs_and_converter_reports(released, tmp_path, capsys):
    m_cfg = m_of('bdl_gta5.py')
    assert m_cfg.decode_head.summed_branches == 2
    m_cfg.decode_head.summed_branches = None  # the documented switch: DeepLabV2 as designed
    model = build(m_cfg).eval()
    load_checkpoint(model, released['path'], strict=True, logger='silent')
    with torch.no_grad():
        designed = model(released['x'], mode='tensor')
        four = release_forward(released['sd'], released['x'], summed=4)
    assert rel_diff(designed, four) < 1e-5
    assert rel_diff(designed, released['ref']) > 0.05  # the untrained branches add noise to the published model
    # the converter says what it keeps and which layout it recognised; a post-2020 file is told apart
    meta = torch.load(released['path'], weights_only=True)['meta']
    assert meta['classifier'] == 'published' and meta['summed_branches'] == 2
    trained = release_state_dict(trained_branches=4, seed=1)
    assert bdl_release.detect_classifier(trained) == 'designed'
    assert bdl_release.detect_classifier(released['sd']) == 'published'
    torch.save(trained, tmp_path / 'post2020.pth')
    capsys.readouterr()
    bdl_release.main([str(tmp_path / 'post2020.pth'), str(tmp_path / 'post2020_mm.pth')])
    out = capsys.readouterr().out
    assert 'all kept, none dropped' in out and 'classifier: designed (recognised from its values)' in out
    assert torch.load(tmp_path / 'post2020_mm.pth', weights_only=True)['meta']['summed_branches'] is None
    bdl_release.main([str(tmp_path / 'post2020.pth'), str(tmp_path / 'forced.pth'), '--classifier', 'published'])
    assert 'warning: its values look designed' in capsys.readouterr().out


def test_classifier_layout_mismatch_fails_in_one_line_before_training(tmp_path):
    small = release_state_dict(layers=(1, 1, 1, 1), trained_branches=4, num_classes=19)
    torch.save(small, tmp_path / 'post2020.pth')
    bdl_release.main([str(tmp_path / 'post2020.pth'), str(tmp_path / 'designed.pth')])
    with pytest.raises(ValueError, match=r'summed_branches=2 ignores decode_head.conv2d_list.2-3.weight/bias'):
        check_classifier_checkpoint(m_of('bdl_gta5.py'), str(tmp_path / 'designed.pth'))
    two = m_of('bdl_gta5.py')
    two.decode_head.dilations = (6, 12)
    with pytest.raises(ValueError, match=r'has 4 branches \(decode_head.conv2d_list.0.bias .*dilations has 2'):
        check_classifier_checkpoint(two, str(tmp_path / 'designed.pth'))
    # through tools/train.py: one line, non-zero exit, nothing trained
    work = tmp_path / 'work'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'),
                           osp.join(ROOT, 'configs', 'm', 'deeplabv2_r101_gta5_source_only.py'), '--work-dir',
                           str(work), '--cfg-options', f'load_from={tmp_path / "designed.pth"}'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith('error: load_from') and 'decode_head.conv2d_list.2-3' in lines[-1]
    assert 'Traceback' not in proc.stderr and not work.exists()


def test_classifier_init_as_release():
    head = build(m_of('bdl_gta5.py').decode_head)
    bound = 1 / (2048 * 9)**0.5
    for conv in head.conv2d_list:
        assert abs(conv.weight.std().item() - 0.01) < 1e-4 and abs(conv.weight.mean().item()) < 1e-4
        assert conv.bias.abs().max().item() <= bound and conv.bias.std().item() > bound / 4  # PyTorch default
    assert [c.weight.requires_grad for c in head.conv2d_list] == [True, True, False, False]
    x = torch.randn(1, 2048, 5, 6)
    head.forward([x]).sum().backward()
    assert [c.weight.grad is not None for c in head.conv2d_list] == [True, True, False, False]
    with torch.no_grad():
        expected = sum(F.conv2d(x, c.weight, c.bias, padding=c.padding, dilation=c.dilation)
                       for c in head.conv2d_list[:2])
    torch.testing.assert_close(head.forward([x]), expected)
    zero = m_of('bdl_gta5.py').decode_head
    zero.bias_init = 'zero'
    assert all(torch.equal(c.bias, torch.zeros(19)) for c in build(zero).conv2d_list)


def small_m(norm_eval=None):
    cfg = m_of('bdl_gta5.py')
    cfg.backbone.update(depth=50, stem_channels=8, base_channels=4)
    cfg.decode_head.update(in_channels=128, num_classes=3)
    if norm_eval is not None:
        cfg.backbone.norm_eval = norm_eval
    torch.manual_seed(0)
    return build(cfg)


def test_batchnorm_as_release():
    model = small_m()
    bn1 = model.backbone.bn1
    bn1.running_mean.uniform_(-1, 1)
    bn1.running_var.uniform_(0.5, 2)
    mean0, var0 = bn1.running_mean.clone(), bn1.running_var.clone()
    model.train()
    assert bn1.training and not any(p.requires_grad for p in bn1.parameters())  # affine frozen, batch statistics
    x = torch.randn(1, 3, 33, 41) * 40
    model(x, mode='tensor').sum().backward()
    stem = F.conv2d(x, model.backbone.conv1.weight, stride=2, padding=3).detach()
    torch.testing.assert_close(bn1.running_mean, 0.9 * mean0 + 0.1 * stem.mean((0, 2, 3)))
    torch.testing.assert_close(bn1.running_var, 0.9 * var0 + 0.1 * stem.var((0, 2, 3)))  # unbiased, momentum 0.1
    assert bn1.weight.grad is None and model.backbone.conv1.weight.grad.abs().sum() > 0
    # evaluation (and SSL, F's M) normalise with those drifted running statistics
    model.eval()
    with torch.no_grad():
        y = F.batch_norm(stem, bn1.running_mean, bn1.running_var, bn1.weight, bn1.bias, False, 0., 1e-5)
        torch.testing.assert_close(bn1(stem), y)
    # the documented switch: statistics frozen too
    frozen = small_m(norm_eval=True).train()
    before = frozen.backbone.bn1.running_mean.clone()
    frozen(x, mode='tensor')
    assert not frozen.backbone.bn1.training and torch.equal(frozen.backbone.bn1.running_mean, before)


def _pipeline(steps):
    from mmcv.transforms import Compose
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Compose(copy.deepcopy(steps))


def test_resize_as_release(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (61, 97, 3), dtype=np.uint8)
    label = rng.choice(np.array(list(range(19)) + [255], dtype=np.uint8), (61, 97))
    Image.fromarray(rgb).save(tmp_path / 'img.png')
    Image.fromarray(label).save(tmp_path / 'lbl.png')
    cfg = config('bdl_gta5.py')
    source = cfg.train_dataloader.dataset.source.pipeline
    assert [s.type for s in source] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize', 'PackSegInputs']
    out = _pipeline(source[:3])(dict(img_path=str(tmp_path / 'img.png'), seg_map_path=str(tmp_path / 'lbl.png'),
                                     reduce_zero_label=False, seg_fields=[]))
    # the release: PIL RGB image resized BICUBIC to 1280x720 then BGR; label resized NEAREST
    ref_img = np.asarray(Image.open(tmp_path / 'img.png').convert('RGB').resize((1280, 720), Image.BICUBIC))[..., ::-1]
    ref_lbl = np.asarray(Image.open(tmp_path / 'lbl.png').resize((1280, 720), Image.NEAREST))
    np.testing.assert_array_equal(out['img'], ref_img)
    np.testing.assert_array_equal(out['gt_seg_map'], ref_lbl)
    # the target (Cityscapes train) and the evaluation images: 1024x512 bicubic; evaluation labels stay full size
    for pipeline in (cfg.train_dataloader.dataset.target.pipeline, cfg.test_dataloader.dataset.pipeline):
        out = _pipeline(pipeline[:2])(dict(img_path=str(tmp_path / 'img.png'), reduce_zero_label=False,
                                           seg_fields=[]))
        ref = np.asarray(Image.open(tmp_path / 'img.png').convert('RGB').resize((1024, 512), Image.BICUBIC))
        np.testing.assert_array_equal(out['img'], ref[..., ::-1])


def test_scale_width_as_pytorch_cyclegan(tmp_path):
    from bdl_mm.datasets.transforms import scale_width
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (1052, 1914, 3), dtype=np.uint8)
    out = scale_width(img, 1024)
    # pytorch-CycleGAN __scale_width: (w, h) = (1024, int(1024 * 1052 / 1914)) = (1024, 562), PIL BICUBIC
    assert out.shape == (562, 1024, 3)
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(img).resize((1024, 562), Image.BICUBIC)))
    assert scale_width(out, 1024) is out  # already that width: unchanged
    # F's training pipeline (translation config): scale_width 1024, random 452 crop, flip
    Image.fromarray(img).save(tmp_path / 'a.png')
    Image.fromarray(img[:1024, :1500]).save(tmp_path / 'b.png')
    cfg = config('translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py')
    steps = cfg.train_dataloader.dataset.pipeline
    assert steps[2].type == 'mmagic.ScaleWidth' and steps[2].width == 1024
    with DefaultScope.overwrite_default_scope('mmagic'):
        from mmcv.transforms import Compose
        out = Compose(copy.deepcopy(steps[:4]))(dict(img_source_path=str(tmp_path / 'a.png'),
                                                      img_target_path=str(tmp_path / 'b.png')))
    assert out['img_source'].shape == out['img_target'].shape == (452, 452, 3)


def test_translate_at_training_width(tmp_path):
    from bdl_mm.apis.translate import training_width, translate_dataset
    assert training_width(config('translation/perceptual_cyclegan_base.py')) == 1024
    src = tmp_path / 'src'
    src.mkdir()
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (50, 100, 3), dtype=np.uint8)
    Image.fromarray(img).save(src / 'x.png')
    gen = torch.nn.Conv2d(3, 3, 1)  # a bare generator: output = f(pixels) pointwise
    with torch.no_grad():
        gen.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 0.5)
        gen.bias.zero_()
    stats = translate_dataset(gen, str(src), str(tmp_path / 'out'), scale_width=64, num_workers=0, progress=False)
    assert stats['written'] == 1
    out = np.asarray(Image.open(tmp_path / 'out' / 'x.png').convert('RGB'))
    assert out.shape == (32, 64, 3)  # int(64 * 50 / 100) rows: kept at the translation scale
    resized = np.asarray(Image.fromarray(img).resize((64, 32), Image.BICUBIC)).astype(np.float64)
    expected = np.clip(np.round(((resized - 127.5) / 127.5 * 0.5) * 127.5 + 127.5), 0, 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def test_global_batch_split():
    from bdl_mm.utils import apply_global_batch_size
    cfg = config('translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py')
    assert cfg.global_batch_size == 4
    got = {}
    for world in (1, 2, 4):
        c = copy.deepcopy(cfg)
        apply_global_batch_size(c, world)
        got[world] = c.train_dataloader.batch_size
    assert got == {1: 4, 2: 2, 4: 1}  # batch per process x processes = 4 (the release)
    with pytest.raises(ValueError, match='global_batch_size=4 must be a positive multiple of the number of proc'):
        apply_global_batch_size(copy.deepcopy(cfg), 3)


def test_f_lr_schedule_as_release():
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = config('translation/perceptual_cyclegan_base.py')
    param = torch.nn.Parameter(torch.zeros(1))
    wrapper = OptimWrapper(torch.optim.Adam([param], lr=2e-4))
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper)) for s in cfg.param_scheduler.generators]
    lrs = []
    for epoch in range(cfg.max_epochs):
        lrs.append(wrapper.optimizer.param_groups[0]['lr'])
        for s in schedulers:  # mmengine steps epoch-based schedulers after every epoch, as pytorch-CycleGAN
            s.step()
    # pytorch-CycleGAN (niter 10, niter_decay 10): lambda(e) = 1 - max(0, e + 1 + 1 - 10) / 11
    expected = [2e-4 * (1 - max(0, e + 2 - 10) / 11) for e in range(20)]
    np.testing.assert_allclose(lrs, expected, atol=1e-12)
    assert lrs[9] == pytest.approx(2e-4 * 10 / 11) and lrs[19] == 0


def test_prediction_upsamples_probabilities_once():
    from mmseg.structures import SegDataSample
    model = small_m().eval()
    assert type(model).__name__ == 'BDLEncoderDecoder' and model.upsample == 'probs'
    x = torch.randn(1, 3, 33, 41) * 40
    sample = SegDataSample(metainfo=dict(ori_shape=(70, 90), img_shape=(33, 41), pad_shape=(33, 41),
                                         padding_size=[0, 0, 0, 0]))
    with torch.no_grad():
        pred = model.predict(x, [sample])[0]
        logits = model.decode_head.forward(model.extract_feat(x))  # 1/8 resolution
        probs = F.interpolate(F.softmax(logits, 1), (70, 90), mode='bilinear', align_corners=True)[0]
    torch.testing.assert_close(pred.seg_logits.data, probs)
    assert torch.equal(pred.pred_sem_seg.data[0], probs.argmax(0))
    # the switch back: MMSeg's EncoderDecoder.predict, to the bit
    model.upsample = 'logits'
    with torch.no_grad():
        ref = super(type(model), model).predict(x, [SegDataSample(metainfo=sample.metainfo)])[0]
        ours = model.predict(x, [SegDataSample(metainfo=sample.metainfo)])[0]
        twice = F.interpolate(F.interpolate(logits, (33, 41), mode='bilinear', align_corners=True), (70, 90),
                              mode='bilinear', align_corners=True)[0]
    assert torch.equal(ours.seg_logits.data, ref.seg_logits.data)
    torch.testing.assert_close(ref.seg_logits.data, twice)
    with pytest.raises(ValueError, match="upsample='probs'.*needs test_cfg.mode='whole'"):
        cfg = m_of('bdl_gta5.py')
        cfg.test_cfg = dict(mode='slide', crop_size=(8, 8), stride=(4, 4), upsample='probs')
        build(cfg)


def test_pseudo_label_confidences_as_release():
    from bdl_mm.apis.pseudo_label import segmentor_probs
    model = small_m().eval()
    x = torch.randn(2, 3, 40, 48) * 40
    with torch.no_grad():
        probs = segmentor_probs(model, x, [dict(img_shape=(40, 48))] * 2)
        logits = model.decode_head.forward(model.extract_feat(x))
        # SSL.py: softmax at 1/8, probabilities upsampled to the label size, then max / argmax
        ref = F.interpolate(F.softmax(logits, 1), (40, 48), mode='bilinear', align_corners=True)
    torch.testing.assert_close(probs, ref)
    model.upsample = 'logits'  # MMSeg's order: logits upsampled, then softmax
    with torch.no_grad():
        mm = segmentor_probs(model, x, [dict(img_shape=(40, 48))] * 2)
    torch.testing.assert_close(mm, F.softmax(F.interpolate(logits, (40, 48), mode='bilinear', align_corners=True), 1))
    assert not torch.allclose(mm, probs, atol=1e-4)


@pytest.mark.parametrize('n', [1, 2, 3, 4, 5, 10, 11, 1000, 1001])
def test_release_median(n):
    from bdl_mm.apis import ssl_thresholds as T
    rng = np.random.default_rng(n)
    conf = rng.random(n)
    label = np.zeros(n, dtype=np.int64)
    hist = T.accumulate_histogram(T.empty_histogram(2), label, T.quantize_confidence(conf))
    q = T.dequantize_confidence(T.quantize_confidence(conf))
    # SSL.py: x = np.sort(x); thres = x[np.int(np.round(len(x) * 0.5))]
    assert T.release_median_from_histogram(hist)[0] == np.sort(q)[int(np.round(n * 0.5))]
    assert np.isnan(T.release_median_from_histogram(hist)[1])
    thr = T.class_median_thresholds(hist, 0.9, median='release')
    assert thr[0] == min(np.sort(q)[int(np.round(n * 0.5))], 0.9)
    with pytest.raises(ValueError, match='median must be one of'):
        T.class_median_thresholds(hist, 0.9, median='mean')
