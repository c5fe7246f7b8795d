"""The preflight's disk estimate (bdl_mm.engine.disk_estimate): what the plan's remaining stages write, against a
hand computation on the toy config, and the warning when the work dir's free space may not hold it."""
import copy
import logging
import os
import os.path as osp
from collections import namedtuple

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from PIL import Image
from toy_helpers import ROOT

from bdl_mm.engine import disk_estimate
from bdl_mm.engine.disk_estimate import check_free_space, checkpoint_bytes, estimate_plan_bytes
from bdl_mm.engine.stage_configs import StageConfigBuilder
from bdl_mm.structures.plan import build_plan
from bdl_mm.structures.stage_kinds import M_KINDS

TOY = osp.join(ROOT, 'configs', 'bdl_toy.py')


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    src = tmp_path_factory.mktemp('src')
    (src / 'images').mkdir()
    Image.fromarray(np.zeros((144, 320, 3), np.uint8)).save(src / 'images' / '00001.png')  # W 320, H 144
    cfg = Config.fromfile(TOY)
    cfg.train_cfg.references = None
    cfg.train_dataloader.dataset.source.data_root = str(src)
    configs = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), str(src / 'run'))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return configs, MODELS.build(copy.deepcopy(cfg.model))


def nbytes(module, trainable=False):
    """float32 weights (4 bytes), BatchNorm's num_batches_tracked (int64, 8)"""
    tensors = [p for p in module.parameters() if p.requires_grad] if trainable else module.state_dict().values()
    return sum(t.numel() * (8 if t.dtype == torch.int64 else 4) for t in tensors)


def test_m_checkpoint_is_weights_plus_each_optimisers_state(toy):
    configs, model = toy
    optim = configs.m_stage_cfg(configs.plan.get('k1/m1')).optim_wrapper
    assert optim.segmentor.optimizer.type == 'SGD' and optim.segmentor.optimizer.momentum > 0
    assert optim.discriminator.optimizer.type == 'Adam'
    # weights (parameters and buffers) + one momentum tensor per trained M parameter + Adam's two per D parameter
    expected = nbytes(model) + nbytes(model.segmentor, True) + 2 * nbytes(model.discriminator, True)
    assert checkpoint_bytes(model, optim) == expected
    assert nbytes(model.segmentor, True) < sum(p.numel() * 4 for p in model.segmentor.parameters())  # frozen BN


def test_plan_estimate_by_hand(toy):
    configs, model = toy
    plan = configs.plan
    units = {'k1/translate': 10, 'k2/translate': 10, 'k1/ssl1': 6, 'k1/ssl2': 6, 'k2/ssl1': 6, 'k2/ssl2': 6}
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope('mmseg')
    est = estimate_plan_bytes(plan, configs, model, units)
    # building F (mmagic) leaves the run's scope as it was: a resumed run whose next stage is translate builds M in
    # it (found by tests/test_engine/test_kill_resume.py: 'BDLEncoderDecoder is not in the mmagic::model registry')
    assert DefaultScope.get_current_instance().scope_name == 'mmseg'
    m_stages = [s for s in plan if s.kind in M_KINDS]
    assert len(m_stages) == 7
    ckpt = checkpoint_bytes(model, configs.m_stage_cfg(m_stages[1]).optim_wrapper)
    # 3 kept checkpoints (the toy's max_keep_ckpts=1 is raised to 3) + final_model.pth + segmentor.pth
    assert est['m'] == 7 * (3 * ckpt + nbytes(model) + nbytes(model.segmentor))
    # S': F scales the 320x144 source to width 256 (ScaleWidth): 256x115 RGB per image, 20 images
    assert est['translate'] == 20 * 256 * round(144 * 256 / 320) * 3
    # pseudo labels at the target scale 256x128: a label byte and a 3-byte cache per pixel, 24 images
    assert est['pseudo_label'] == 24 * 256 * 128 * 4
    assert est['f'] > 2 * 3 * 2 * 50 * 3 * 112 * 112 * 4  # two F stages, 3 checkpoints each, two full pools
    assert est['total'] == est['m'] + est['f'] + est['translate'] + est['pseudo_label']
    done = {s.name for s in plan if s.name != 'k2/m2'}  # --resume: only the last stage is left
    assert estimate_plan_bytes(plan, configs, model, units, done)['total'] == 3 * ckpt + nbytes(model) + nbytes(
        model.segmentor)


def test_prealigned_source_is_one_more_copy_of_s_per_translate_stage(toy):
    """Ledger row 20 (``stages.translation.prealign``): the translation stage writes the source through the
    baseline at the source's size (320x144) before F, once per round, on top of S' at F's width."""
    configs, model = toy
    cfg = copy.deepcopy(configs.cfg)
    cfg.train_cfg.stages.translation.prealign = dict(type='Reinhard')
    r6 = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), configs.work_dir)
    est = estimate_plan_bytes(r6.plan, r6, model, {'k1/translate': 10, 'k2/translate': 10})
    assert est['translate'] == 20 * 256 * round(144 * 256 / 320) * 3 + 20 * 320 * 144 * 3


def test_ssl_baseline_source_is_one_more_copy_of_s_per_run(toy, tmp_path):
    """Ledger row 21 (``train_cfg.ssl_baseline_source``): B(S) at M's source scale (256x144; the source images are
    320x144), once per run, until its record is written."""
    configs, model = toy
    cfg = copy.deepcopy(configs.cfg)
    cfg.train_cfg.ssl_baseline_source = dict(type='Reinhard')
    r21 = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), str(tmp_path))
    units = {'k1/translate': 10, 'k2/translate': 10}
    est = estimate_plan_bytes(r21.plan, r21, model, units)
    assert est['translate'] == 20 * 256 * round(144 * 256 / 320) * 3 + 10 * 256 * 144 * 3
    os.makedirs(tmp_path / 'ssl_baseline_source')
    (tmp_path / 'ssl_baseline_source' / 'record.json').write_text('{}')
    assert estimate_plan_bytes(r21.plan, r21, model, units)['translate'] == 20 * 256 * round(144 * 256 / 320) * 3


def test_free_space_warning(tmp_path, monkeypatch, caplog):
    Usage = namedtuple('Usage', 'total used free')
    logger = logging.getLogger('test_disk_estimate')
    estimate = dict(m=3 * 2**30, f=2**30, translate=0, pseudo_label=0, total=4 * 2**30)
    monkeypatch.setattr(disk_estimate.shutil, 'disk_usage', lambda path: Usage(10 * 2**30, 0, 3 * 2**30))
    with caplog.at_level(logging.INFO, logger='test_disk_estimate'):
        assert not check_free_space(str(tmp_path), estimate, logger)
    (record, ) = caplog.records
    assert record.levelno == logging.WARNING and '4.0 GiB' in record.message and '3.0 GiB free' in record.message
    assert str(tmp_path) in record.message and 'may not fit' in record.message and 'm 3.0, f 1.0' in record.message
    caplog.clear()
    monkeypatch.setattr(disk_estimate.shutil, 'disk_usage', lambda path: Usage(10 * 2**30, 0, 5 * 2**30))
    with caplog.at_level(logging.INFO, logger='test_disk_estimate'):
        assert check_free_space(str(tmp_path), estimate, logger)
    assert caplog.records[0].levelno == logging.INFO
