# Copyright (c) bdl_mm contributors.
"""tools/pseudo_label.py: a run in a subprocess on a tiny config + BDL-style checkpoint, and its refusals."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from bdl_mm.apis.pseudo_label import generate_pseudo_labels

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


toy = _load('benchmark_pseudo_label', 'tools/benchmark_pseudo_label.py')
tool = _load('pseudo_label_tool', 'tools/pseudo_label.py')
REL = 'aachen/aachen_000000_000019_leftImg8bit.png'


def write_config(path, root, num_classes=19):
    """A BDL-style config: the model wraps the segmentor, the target is the UDADataset's ``target``."""
    target = toy.toy_dataset_cfg(root, 24, 48)
    target['pipeline'].insert(2, dict(type='RandomFlip', prob=1.0))
    cfg = dict(
        default_scope='mmseg',
        model=dict(type='BDLSegmentor', segmentor=toy.tiny_segmentor_cfg(num_classes)),
        train_dataloader=dict(batch_size=1, num_workers=0,
                              dataset=dict(type='UDADataset', source=dict(), target=target)))
    with open(path, 'w') as f:
        for k, v in cfg.items():
            f.write(f'{k} = {v!r}\n')
    return str(path)


def write_checkpoint(path, model, prefix='segmentor.'):
    torch.save(dict(meta=dict(iter=10), state_dict={prefix + k: v for k, v in model.state_dict().items()}), path)
    return str(path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('tool')
    root = toy.make_toy_target(str(tmp / 'target'), 3, height=30, width=60)
    model = toy.build_tiny_segmentor(seed=5)
    return tmp, root, model, write_config(tmp / 'cfg.py', root), write_checkpoint(tmp / 'm.pth', model)


def test_cli_run_in_subprocess(setup):
    tmp, root, model, cfg, ckpt = setup
    out = str(tmp / 'cli')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'pseudo_label.py'), cfg, ckpt, '--out', out,
                           '--mode', 'class_median', '--batch-size', '2', '--num-workers', '0', '--device', 'cpu'],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'kept' in proc.stdout
    with open(osp.join(out, 'summary.json')) as f:
        summary = json.load(f)
    assert summary['num_images'] == 3 and summary['checkpoint'] == ckpt and summary['config'] == cfg
    # same labels as the API on the same weights (so the segmentor.-prefixed keys were loaded)
    direct = str(tmp / 'direct')
    generate_pseudo_labels(model, dict(batch_size=1, dataset=toy.toy_dataset_cfg(root, 24, 48)), direct,
                           progress=False)
    for city, i in (('aachen', 0), ('bochum', 1), ('cologne', 2)):
        rel = f'{city}/{city}_{i:06d}_000019_leftImg8bit.png'
        a = cv2.imread(osp.join(out, rel), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(osp.join(direct, rel), cv2.IMREAD_UNCHANGED)
        assert (a == b).mean() > 0.999  # batch of 2 vs 1: float rounding only


def test_checkpoint_with_other_class_count_fails_before_writing(setup, tmp_path):
    _, root, _, cfg, _ = setup
    ckpt = write_checkpoint(tmp_path / 'm16.pth', toy.build_tiny_segmentor(num_classes=16), prefix='')
    out = tmp_path / 'pl'
    with pytest.raises(ValueError, match=r'decode_head.conv_seg.weight is \(16, 8, 1, 1\) there but \(19, 8, 1, 1\)'):
        tool.main([cfg, ckpt, '--out', str(out), '--device', 'cpu'])
    assert not out.exists()
    # the config itself built for another class count: refused as well
    cfg16 = write_config(tmp_path / 'cfg16.py', root, num_classes=16)
    with pytest.raises(ValueError, match='16 classes but the target set CityscapesDataset has 19'):
        tool.main([cfg16, ckpt, '--out', str(out), '--device', 'cpu'])
    assert not out.exists()


def test_other_settings_refused_unless_overwrite(setup, tmp_path):
    _, _, _, cfg, ckpt = setup
    out = str(tmp_path / 'pl')
    args = [cfg, ckpt, '--out', out, '--device', 'cpu', '--num-workers', '0']
    assert tool.main(args + ['--mode', 'global']) == 0
    first = cv2.imread(osp.join(out, REL), cv2.IMREAD_UNCHANGED)
    assert tool.main(args + ['--mode', 'global']) == 0  # same settings: resumes (nothing to do)
    with pytest.raises(FileExistsError, match='other settings'):
        tool.main(args + ['--mode', 'soft'])
    np.testing.assert_array_equal(cv2.imread(osp.join(out, REL), cv2.IMREAD_UNCHANGED), first)  # untouched
    assert tool.main(args + ['--mode', 'soft', '--overwrite']) == 0
    with open(osp.join(out, 'summary.json')) as f:
        assert json.load(f)['mode'] == 'soft'
    assert osp.exists(osp.join(out, REL.replace('.png', '_conf.png')))


def test_portion_option_reaches_the_labels(setup, tmp_path):
    _, _, _, cfg, ckpt = setup
    runs = {}
    for name, extra in (('half', []), ('small', ['--portion', '0.2', '--threshold', '1.0'])):
        out = str(tmp_path / name)
        assert tool.main([cfg, ckpt, '--out', out, '--device', 'cpu', '--num-workers', '0'] + extra) == 0
        with open(osp.join(out, 'summary.json')) as f:
            runs[name] = json.load(f)
    assert 'portion' not in runs['half'] and runs['small']['portion'] == 0.2
    assert runs['small']['kept_ratio'] < runs['half']['kept_ratio']
