# Copyright (c) bdl_mm contributors.
"""checkpoint_weights: the one reader of weights behind M's, the frozen M's and F's loaders. A checkpoint saved
from a DDP-wrapped model (``module.`` on every key), in mmengine's layout or as a bare state dict, loads into all
three exactly."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

import bdl_mm  # noqa: F401
from bdl_mm.apis.m_model import build_m
from bdl_mm.apis.translate import load_translator
from bdl_mm.models.translators.frozen_segmentor import build_frozen_segmentor
from bdl_mm.utils.weights import checkpoint_weights

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY = osp.join(ROOT, 'configs/bdl_toy.py')
F_BASE = osp.join(ROOT, 'configs/translation/perceptual_cyclegan_base.py')


def ddp(state: dict) -> dict:
    return {f'module.{k}': v for k, v in state.items()}


@pytest.mark.parametrize('layout', ['mmengine', 'bare'])
def test_checkpoint_weights_strips_ddp_prefix(tmp_path, layout):
    state = {'a.weight': torch.arange(3.), 'module_b.bias': torch.ones(2)}  # 'module_b' is not the prefix
    path = str(tmp_path / 'w.pth')
    torch.save(dict(state_dict=ddp(state), meta=dict(x=1)) if layout == 'mmengine' else ddp(state), path)
    out = checkpoint_weights(path)
    assert sorted(out) == ['a.weight', 'module_b.bias']
    assert torch.equal(out['a.weight'], torch.arange(3.)) and torch.equal(out['module_b.bias'], torch.ones(2))


def test_m_and_frozen_m_load_a_ddp_bdl_checkpoint(tmp_path):
    cfg = Config.fromfile(TOY)
    init_default_scope('mmseg')
    torch.manual_seed(3)
    bdl = MODELS.build(cfg.model)  # BDLSegmentor: segmentor.* and discriminator.*
    path = str(tmp_path / 'bdl_ddp.pth')
    torch.save(dict(state_dict=ddp(bdl.state_dict())), path)
    want = bdl.segmentor.state_dict()
    for model in (build_m(cfg, path), build_frozen_segmentor(cfg.model.segmentor, path)):
        got = model.state_dict()
        assert sorted(got) == sorted(want)
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_f_loads_a_ddp_checkpoint(tmp_path):
    cfg = tmp_path / 'f_tiny.py'
    cfg.write_text(f"_base_ = ['{F_BASE}']\n"
                   "model = dict(generator=dict(base_channels=4, num_blocks=1), discriminator=dict(base_channels=4))\n")
    torch.manual_seed(0)
    model = load_translator(str(cfg))
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    path = str(tmp_path / 'f_ddp.pth')
    torch.save(dict(state_dict=ddp(model.state_dict())), path)
    loaded = load_translator(str(cfg), path)
    want = model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in loaded.state_dict().items())
    assert sum(int(v.numel()) for v in want.values()) > 0
