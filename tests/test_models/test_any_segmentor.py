# Copyright (c) bdl_mm contributors.
"""Any MMSeg EncoderDecoder as M (issue 11): MMSeg's DeepLabV3+ (with its FCN auxiliary head) and SegFormer through
BDLSegmentor, DDP, F's perceptual loss, pseudo labels and the config checks; M's normalisation written once."""
import copy
import os.path as osp
import tempfile
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from toy_helpers import ROOT, load_tool, run_tool

import bdl_mm  # noqa: F401
from bdl_mm.apis.m_model import check_m_classes, m_input_format, m_model_cfg
from bdl_mm.apis.pseudo_label import generate_pseudo_labels
from bdl_mm.engine.loops import BidirectionalLoop
from bdl_mm.models.segmentors.bdl_segmentor import BDLSegmentor

init_default_scope('mmseg')

CONFIGS = osp.join(ROOT, 'configs')
RGB_MEAN, RGB_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]  # MMSeg's ImageNet normalisation, RGB
CAFFE_MEAN = [104.00698793, 116.66876762, 122.67891434]  # DeepLabV2's, BGR
IMAGENET_RGB = dict(mean=RGB_MEAN, std=RGB_STD, channel_order='RGB')
NC = 19
# the real configs' M at toy widths and depths (same classes, heads, normalisation and layout)
TINY = {
    'deeplabv3plus': {'backbone.depth': 18, 'backbone.stem_channels': 8, 'backbone.base_channels': 4,
                      'decode_head.in_channels': 32, 'decode_head.channels': 8, 'decode_head.c1_in_channels': 4,
                      'decode_head.c1_channels': 4, 'decode_head.dropout_ratio': 0.,
                      'auxiliary_head.in_channels': 16, 'auxiliary_head.channels': 8,
                      'auxiliary_head.dropout_ratio': 0.},
    'segformer': {'backbone.embed_dims': 8, 'backbone.num_layers': [1, 1, 1, 1],
                  'decode_head.in_channels': [8, 16, 40, 64], 'decode_head.channels': 16,
                  'decode_head.dropout_ratio': 0.},
}
REAL = {'deeplabv3plus': 'bdl_gta5_deeplabv3plus_r101.py', 'segformer': 'bdl_gta5_segformer_mit-b5.py'}


def tiny_cfg(name, bn=False):
    """The real BDL config ``REAL[name]`` with M at toy size (``bn``: plain BN instead of SyncBN, for CPU DDP)."""
    cfg = Config.fromfile(osp.join(CONFIGS, REAL[name]))
    options = {f'model.segmentor.{k}': v for k, v in TINY[name].items()}
    if bn:
        options.update({f'model.segmentor.{k}.norm_cfg': dict(type='BN', requires_grad=True)
                        for k in ('backbone', 'decode_head', 'auxiliary_head') if k in cfg.model.segmentor})
    cfg.merge_from_dict(options)
    return cfg


def build_tiny(name, seed=0, **kwargs):
    cfg = tiny_cfg(name, **kwargs)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def sample(h, w, label, seed):
    g = torch.Generator().manual_seed(seed)
    ds = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
    if label:
        lbl = torch.randint(0, NC, (1, h, w), generator=g)
        lbl[:, :h // 4] = 255
        ds.gt_sem_seg = PixelData(data=lbl)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g), ds


def uda_batch(n=2, pseudo=True):
    """n labelled source samples (40x48) and n target samples (32x40), with pseudo labels if ``pseudo``."""
    src = [sample(40, 48, True, 1 + i) for i in range(n)]
    tgt = [sample(32, 40, pseudo, 11 + i) for i in range(n)]
    return dict(source=dict(inputs=[x for x, _ in src], data_samples=[s for _, s in src]),
                target=dict(inputs=[x for x, _ in tgt], data_samples=[s for _, s in tgt]))


def sgd(model, lr=0.01):
    return OptimWrapperDict(
        segmentor=OptimWrapper(torch.optim.SGD(model.segmentor.parameters(), lr=lr)),
        discriminator=OptimWrapper(torch.optim.SGD(model.discriminator.parameters(), lr=lr)))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters() if v.requires_grad}


# ------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize('name, backbone, head, aux, params', [
    ('deeplabv3plus', 'ResNetV1c', 'DepthwiseSeparableASPPHead', 'FCNHead', 62.58e6),
    ('segformer', 'MixVisionTransformer', 'SegformerHead', 'NoneType', 81.97e6),
])
def test_real_size_configs_build(name, backbone, head, aux, params):
    cfg = Config.fromfile(osp.join(CONFIGS, REAL[name]))
    assert cfg.data_preprocessor is None  # M's normalisation is written once, in model.segmentor
    assert cfg.train_cfg.type == 'BidirectionalLoop' and cfg.model.discriminator.in_channels == NC
    check_m_classes(cfg)  # 19 classes, Cityscapes val
    assert m_input_format(m_model_cfg(cfg)) == IMAGENET_RGB  # what F's seg_input becomes in the loop
    model = MODELS.build(cfg.model)
    seg = model.segmentor
    assert (type(seg.backbone).__name__, type(seg.decode_head).__name__) == (backbone, head)
    assert type(getattr(seg, 'auxiliary_head', None)).__name__ == aux
    assert sum(p.numel() for p in seg.parameters()) == pytest.approx(params, rel=1e-3)
    assert seg.decode_head.num_classes == NC
    assert seg.data_preprocessor.mean.flatten().tolist() == pytest.approx(RGB_MEAN)
    assert seg.data_preprocessor.channel_conversion and model.data_preprocessor is seg.data_preprocessor
    if name == 'segformer':  # MMSeg's SegFormer AdamW: head at 10x, no decay on norms
        optim = build_optim_wrapper(model, cfg.optim_wrapper)['segmentor'].optimizer
        assert type(optim).__name__ == 'AdamW'
        assert sorted({g['lr'] for g in optim.param_groups}) == pytest.approx([6e-5, 6e-4])
        assert {g['weight_decay'] for g in optim.param_groups} == {0., 0.01}
    else:  # MMSeg's ASPP pools the image with BatchNorm: more than one image per batch
        assert cfg.train_dataloader.batch_size == 2


@pytest.mark.parametrize('name', ['deeplabv3plus', 'segformer'])
def test_one_step_at_small_size(name):
    model = build_tiny(name)
    aux = name == 'deeplabv3plus'
    before = snapshot(model.segmentor)
    log = model.train_step(uda_batch(n=2 if name == 'deeplabv3plus' else 1), sgd(model))
    expected = {'src.decode.loss_ce', 'src.decode.acc_seg', 'tgt.loss_ssl', 'tgt.loss_adv', 'dis.loss_src',
                'dis.loss_tgt'}
    if name == 'deeplabv3plus':
        expected |= {'src.aux.loss_ce', 'src.aux.acc_seg', 'tgt.loss_ssl_aux'}
    assert set(log) == expected
    assert all(torch.isfinite(v) for v in log.values())
    assert 1.0 < log['src.decode.loss_ce'] < 6.0 and 1.0 < log['tgt.loss_ssl'] < 6.0  # ~ln(19) = 2.9 at init
    after = snapshot(model.segmentor)
    still = {k for k in before if torch.equal(before[k], after[k])}
    # every convolution of the heads moved (decode and auxiliary), and most of the backbone (MMSeg's ResNet zero-inits
    # the last BN of each residual branch, which keeps the branch's other weights at zero gradient in a first step)
    convs = {k for k in before if before[k].dim() == 4}
    assert not {k for k in still & convs if not k.startswith('backbone.')}, sorted(still)
    assert len(still) < len(before) / 2 and any(k.startswith('auxiliary_head.') for k in before) == aux
    first = 'backbone.stem.0.weight' if name == 'deeplabv3plus' else 'backbone.layers.0.0.projection.weight'
    assert first in before and first not in still


def test_auxiliary_head_pseudo_label_loss_is_its_weighted_ce():
    model = build_tiny('deeplabv3plus')
    model.lambda_ssl = 0.5
    data = uda_batch(n=2)
    seg = copy.deepcopy(model.segmentor)  # the weights before the step, for the reference computation
    log = model.train_step(copy.deepcopy(data), sgd(model))
    tgt = seg.data_preprocessor(data['target'], True)
    label = torch.stack([s.gt_sem_seg.data[0] for s in tgt['data_samples']]).long()
    with torch.no_grad():  # train mode as in the step: BN with the batch's statistics
        feats = seg.extract_feat(tgt['inputs'])
        aux = F.interpolate(seg.auxiliary_head(feats), size=label.shape[1:], mode='bilinear', align_corners=False)
        decode = F.interpolate(seg.decode_head(feats), size=label.shape[1:], mode='bilinear', align_corners=False)
    ce = torch.nn.functional.cross_entropy
    assert seg.auxiliary_head.loss_decode.loss_weight == 0.4  # MMSeg's weight of the auxiliary loss
    assert float(log['tgt.loss_ssl_aux']) == pytest.approx(0.5 * 0.4 * float(ce(aux, label, ignore_index=255)),
                                                          rel=1e-4)
    assert float(log['tgt.loss_ssl']) == pytest.approx(0.5 * float(ce(decode, label, ignore_index=255)), rel=1e-4)


@pytest.fixture
def gloo_world_of_one():
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{tempfile.mktemp()}', rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_ddp_without_unused_parameters_trains_the_auxiliary_head(gloo_world_of_one, monkeypatch):
    """MMSeparateDistributedDataParallel with find_unused_parameters=False (the BDL configs): a target pass
    without pseudo labels must still give the auxiliary head a gradient, or DDP stops the next step."""
    from mmengine.model import MMSeparateDistributedDataParallel

    def run(steps):
        model = build_tiny('deeplabv3plus', bn=True)
        ddp = MMSeparateDistributedDataParallel(model, broadcast_buffers=False, find_unused_parameters=False)
        aux0 = snapshot(model.segmentor.module.auxiliary_head)
        for pseudo in steps:
            log = ddp.train_step(uda_batch(n=2, pseudo=pseudo), sgd(model))
        return model, aux0, log

    model, aux0, log = run([False, False, True])  # adversarial only (twice), then with pseudo labels
    assert 'tgt.loss_ssl_aux' in log and all(torch.isfinite(v) for v in log.values())
    aux1 = snapshot(model.segmentor.module.auxiliary_head)
    assert all(not torch.equal(aux0[k], aux1[k]) for k in aux0)
    # without the auxiliary heads' term in the target pass, DDP refuses the next step
    monkeypatch.setattr(BDLSegmentor, '_aux_heads', staticmethod(lambda seg: []))
    with pytest.raises(RuntimeError, match='did not receive grad'):
        run([False, False])


# ------------------------------------------------------------------------------------------ F and pseudo labels
TOY_SEGFORMER = osp.join(CONFIGS, 'bdl_toy_segformer.py')


def toy_loop(tmp_path, **options):
    """The Algorithm-1 loop of configs/bdl_toy_segformer.py, as the Runner builds it (a stand-in for the Runner,
    which only lends the loop its config and work dir): it builds every stage's model, so a bad config fails here."""
    cfg = Config.fromfile(TOY_SEGFORMER)
    cfg.merge_from_dict(options)
    runner = SimpleNamespace(cfg=cfg, work_dir=str(tmp_path / 'work'))
    return cfg, BidirectionalLoop(runner, None, **{k: v for k, v in cfg.train_cfg.items() if k != 'type'})


def test_perceptual_loss_through_segformer_follows_m_normalisation(tmp_path):
    """The toy SegFormer config states M's normalisation (RGB, ImageNet mean/std) once; F's seg_input follows."""
    from mmagic.registry import MODELS as MMAGIC_MODELS
    from mmagic.structures import DataSample
    cfg, loop = toy_loop(tmp_path)
    assert cfg.data_preprocessor is None and 'seg_input' not in cfg.train_cfg.stages.translation.cfg_options.model
    f_cfg = loop.configs.translation_cfg(next(s for s in loop.plan if s.kind == 'translation'), None)
    assert f_cfg.model.seg_input == IMAGENET_RGB
    f_cfg.model.segmentor.config.backbone.embed_dims = 8  # a smaller M, same normalisation
    f_cfg.model.segmentor.config.decode_head.in_channels = [8, 16, 32, 64]
    torch.manual_seed(0)
    model = MMAGIC_MODELS.build(f_cfg.model)
    model.init_weights()
    m = model.segmentor
    # a generator-range (RGB, [-1, 1]) image reaches M exactly as M's own preprocessor feeds it a loaded BGR image
    bgr = torch.randint(0, 256, (1, 3, 16, 24), dtype=torch.uint8)
    gen = (bgr.flip(1).float() - 127.5) / 127.5
    fed = m.data_preprocessor(dict(inputs=[bgr[0]]), False)['inputs']
    assert torch.allclose(model.to_seg_input(gen), fed, atol=1e-4)
    assert not torch.allclose((bgr.float() - torch.tensor(CAFFE_MEAN).view(1, 3, 1, 1)), fed, atol=1)
    # one F step: the perceptual terms through SegFormer are finite and positive, the generators move
    MessageHub.get_current_instance().update_info('iter', 0)
    keys = ['img_source', 'img_target']
    rng = np.random.RandomState(0)
    imgs = {k: torch.from_numpy(rng.randint(0, 256, (3, 32, 32), dtype=np.uint8)) for k in keys}
    data_sample = DataSample(metainfo={f'{k}_channel_order': 'bgr' for k in keys})
    data_sample.set_tensor_data(dict(imgs))
    optim = OptimWrapperDict(
        generators=OptimWrapper(torch.optim.Adam(model.generators.parameters(), lr=1e-3)),
        discriminators=OptimWrapper(torch.optim.Adam(model.discriminators.parameters(), lr=1e-3)))
    gen0 = snapshot(model.generators)
    log = model.train_step(dict(inputs=[imgs], data_samples=[data_sample]), optim)
    per = {k: float(v) for k, v in log.items() if k.startswith('loss_per')}
    assert len(per) == 4 and all(np.isfinite(v) and v > 0 for v in per.values()), per
    assert any(not torch.equal(v, snapshot(model.generators)[k]) for k, v in gen0.items())


def test_explicit_seg_input_that_differs_from_m_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^train_cfg.stages.translation: the stage config does not build: "
                       r"ValueError: .*seg_input \(mean=\[104.00698793.*channel_order=BGR\) does not match the "
                       r"segmentor M's data_preprocessor \(mean=\[123.67.*channel_order=RGB\)$"):
        toy_loop(tmp_path, **{'train_cfg.stages.translation.cfg_options.model.seg_input': dict(
            mean=CAFFE_MEAN, std=[1., 1., 1.], channel_order='BGR')})


def test_bdl_segmentor_takes_one_normalisation():
    cfg = tiny_cfg('segformer').model
    seg_dp = cfg.segmentor.data_preprocessor
    caffe = dict(seg_dp, mean=CAFFE_MEAN, std=[1., 1., 1.], bgr_to_rgb=False)
    with pytest.raises(ValueError, match=r"differs from model.segmentor.data_preprocessor .* \(in bgr_to_rgb, "
                                         r"mean, std\); M's normalisation is set on model.segmentor only"):
        MODELS.build(dict(cfg, data_preprocessor=caffe))
    assert MODELS.build(dict(cfg, data_preprocessor=dict(seg_dp))).data_preprocessor.channel_conversion
    no_dp = copy.deepcopy(cfg)
    no_dp.segmentor.pop('data_preprocessor')
    with pytest.raises(ValueError, match=r'BDLSegmentor: model.segmentor.data_preprocessor is missing: '):
        MODELS.build(no_dp)
    # a BDL config whose M states none: the BDLSegmentor's is M's everywhere (pseudo labels, F)
    outer = Config(dict(model=dict(no_dp, data_preprocessor=dict(seg_dp))))
    assert m_model_cfg(outer).data_preprocessor == seg_dp
    assert m_input_format(m_model_cfg(outer)) == IMAGENET_RGB
    unpadded = copy.deepcopy(cfg)
    unpadded.segmentor.data_preprocessor.pop('size_divisor')
    model = MODELS.build(unpadded)
    with pytest.raises(ValueError, match='needs size or size_divisor'):
        model.train_step(uda_batch(n=1), sgd(model))


def test_pseudo_labels_from_segformer(tmp_path):
    toy = load_tool('benchmark_pseudo_label.py')
    root = toy.make_toy_target(str(tmp_path / 'target'), 3, height=40, width=80)
    cfg = tiny_cfg('segformer')
    torch.manual_seed(1)
    model = MODELS.build(m_model_cfg(cfg))  # M as the loop's pseudo-label stage builds it
    model.init_weights()
    with torch.no_grad():
        model.decode_head.conv_seg.weight.mul_(50)  # spread the predictions over several classes
    out = str(tmp_path / 'pl')
    loader = dict(batch_size=1, num_workers=0, dataset=toy.toy_dataset_cfg(root, 64, 128))  # MiT: >= 32 px
    summary = generate_pseudo_labels(model, loader, out, mode='soft', progress=False)  # every pixel: the argmax
    assert summary['complete'] and summary['num_images'] == 3 and summary['kept_ratio'] == 1.0

    def predict(img_bgr, mean, std, rgb):
        x = cv2.resize(img_bgr, (128, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        x = torch.from_numpy((x[..., ::-1] if rgb else x).copy()).permute(2, 0, 1)[None]
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            logits = model.decode_head(model.extract_feat(x))
            return F.interpolate(logits, (64, 128), mode='bilinear', align_corners=False).argmax(1)[0].numpy()

    differs = 0
    model.eval()
    for rel in ('aachen/aachen_000000_000019_leftImg8bit.png', 'bochum/bochum_000001_000019_leftImg8bit.png'):
        img = cv2.imread(osp.join(root, 'leftImg8bit/train', rel))
        label = cv2.imread(osp.join(out, rel), cv2.IMREAD_UNCHANGED)
        assert len(np.unique(label)) > 1
        np.testing.assert_array_equal(label, predict(img, RGB_MEAN, RGB_STD, True))  # M's normalisation
        differs += int((label != predict(img, CAFFE_MEAN, [1., 1., 1.], False)).sum())
    assert differs > 0  # DeepLab's normalisation gives other labels: the folder used M's own


# ------------------------------------------------------------------------------------------ classes
def test_classes_mismatch_fails_before_training_naming_the_key(tmp_path, monkeypatch):
    message = ("model.segmentor.decode_head.num_classes is 16 but the dataset (val_dataloader.dataset, "
               "CityscapesDataset) has 19 classes; set it (and model.discriminator.in_channels) to 19, or set the "
               "datasets' metainfo.classes")
    options = {'model.segmentor.decode_head.num_classes': 16, 'model.discriminator.in_channels': 16}
    with pytest.raises(ValueError) as e:
        toy_loop(tmp_path, **options)
    assert str(e.value) == message
    # tools/train.py: the same line, before a runner is built
    monkeypatch.syspath_prepend(osp.join(ROOT, 'tools'))  # tools/_bootstrap.py, as tools/train.py runs
    with pytest.raises(SystemExit) as e:
        run_tool('train.py', TOY_SEGFORMER, '--work-dir', tmp_path / 'bdl', '--cfg-options',
                 *(f'{k}={v}' for k, v in options.items()))
    assert str(e.value) == f'error: {message}' and not osp.exists(tmp_path / 'bdl')
    # the auxiliary head too, and a 16-class protocol stated in the datasets' metainfo passes
    cfg = Config.fromfile(osp.join(CONFIGS, REAL['deeplabv3plus']))
    cfg.model.segmentor.auxiliary_head.num_classes = 16
    with pytest.raises(ValueError, match=r'^model.segmentor.auxiliary_head.num_classes is 16 but .* has 19 classes'):
        check_m_classes(cfg)
    cfg.model.segmentor.decode_head.num_classes = 16
    cfg.val_dataloader.dataset.metainfo = dict(classes=tuple(f'c{i}' for i in range(16)))
    check_m_classes(cfg)
    # a plain MMSeg config through tools/train.py
    with pytest.raises(SystemExit, match=r'^error: model.decode_head.num_classes is 16 but the dataset '
                                         r'\(val_dataloader.dataset, CityscapesDataset\) has 19 classes;'):
        run_tool('train.py', osp.join(CONFIGS, 'm', 'deeplabv2_r101_gta5_source_only.py'), '--work-dir',
                 tmp_path / 'plain', '--cfg-options', 'model.decode_head.num_classes=16')
    assert not osp.exists(tmp_path / 'plain')


def test_imagenet_backbone_checkpoint_loads_as_documented(tmp_path):
    """README: MMSeg's ImageNet backbone weights (backbone keys, as MMSeg's mit_b5 / resnet101_v1c files) load
    through model.segmentor.backbone.init_cfg=dict(type='Pretrained', checkpoint=...)."""
    pretrained = build_tiny('segformer', seed=3).segmentor.backbone.state_dict()
    path = str(tmp_path / 'mit_tiny.pth')
    torch.save(dict(state_dict=pretrained), path)
    cfg = tiny_cfg('segformer')
    cfg.merge_from_dict({'model.segmentor.backbone.init_cfg.type': 'Pretrained',
                         'model.segmentor.backbone.init_cfg.checkpoint': path})
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    loaded = model.segmentor.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in pretrained.items())
