"""OpenMMLab's usual tools: Slurm launchers (MMSeg's form) and tools/analysis_tools/{benchmark,get_flops}.py for M,
smoke-tested on the toy config at tiny sizes."""
import os
import os.path as osp
import subprocess

import pytest
import torch
from mmengine.config import Config
from toy_helpers import ROOT, load_tool

from bdl_mm.apis.m_model import build_m, m_input_shape

TOY = osp.join(ROOT, 'configs', 'bdl_toy.py')


@pytest.mark.parametrize('script, args, expected', [
    ('slurm_train.sh', ['gpu', 'bdl', 'configs/bdl_gta5.py', '--work-dir', 'w'],
     ['-p', 'gpu', '--job-name=bdl', '--gres=gpu:2', '--ntasks=4', '--ntasks-per-node=2', '--cpus-per-task=5',
      '--kill-on-bad-exit=1', 'PY', '-u', 'train.py', 'configs/bdl_gta5.py', '--launcher=slurm', '--work-dir', 'w']),
    ('slurm_test.sh', ['gpu', 'bdl', 'configs/bdl_gta5.py', 'final.pth'],
     ['-p', 'gpu', '--job-name=bdl', '--gres=gpu:2', '--ntasks=4', '--ntasks-per-node=2', '--cpus-per-task=5',
      '--kill-on-bad-exit=1', 'PY', '-u', 'test.py', 'configs/bdl_gta5.py', 'final.pth', '--launcher=slurm']),
])
def test_slurm_scripts(script, args, expected, tmp_path):
    path = osp.join(ROOT, 'tools', script)
    assert subprocess.run(['bash', '-n', path]).returncode == 0
    # a stand-in srun records the command the script starts
    fake = tmp_path / 'srun'
    fake.write_text('#!/usr/bin/env bash\nfor a in "$@"; do echo "$a"; done > "$SRUN_LOG"\n')
    fake.chmod(0o755)
    log = tmp_path / 'srun.log'
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}', SRUN_LOG=str(log), GPUS='4', GPUS_PER_NODE='2',
               PYTHON='PY')
    proc = subprocess.run(['bash', path, *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = [osp.basename(a) if a.endswith('.py') and a.startswith('/') else a for a in log.read_text().split('\n')[:-1]]
    assert got == expected


def conv_macs(model, inputs):
    """Multiply-adds of every Conv2d of a forward pass, counted independently with hooks."""
    total = []

    def hook(mod, inp, out):
        total.append(out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])

    handles = [mod.register_forward_hook(hook) for mod in model.modules() if isinstance(mod, torch.nn.Conv2d)]
    with torch.no_grad():
        model(inputs)
    for handle in handles:
        handle.remove()
    return sum(total)


def batch_norm_flops(model, inputs):
    """mmengine counts an inference BatchNorm as 2 FLOPs per input element (1 without affine parameters)."""
    total = []
    handles = [mod.register_forward_hook(lambda mod, inp, out: total.append(inp[0].numel() * (2 if mod.affine else 1)))
               for mod in model.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model(inputs)
    for handle in handles:
        handle.remove()
    return sum(total)


@pytest.mark.parametrize('shape', [(64, 128), (96, 96)])
def test_get_flops_of_m(shape):
    result = load_tool('analysis_tools/get_flops.py').main([TOY, '--shape', *map(str, shape)])
    m = build_m(Config.fromfile(TOY))
    assert result['params'] == sum(p.numel() for p in m.parameters())  # every parameter of M, none of D_M
    assert result['input_shape'] == [3, *shape]
    inputs = torch.rand(1, 3, *shape)
    assert result['flops'] == conv_macs(m, inputs) + batch_norm_flops(m, inputs)


def test_benchmark_of_m(tmp_path):
    cfg = Config.fromfile(TOY)
    assert m_input_shape(cfg) == (128, 256)  # the toy test pipeline's Resize scale (256, 128) = (w, h)
    # a BDL checkpoint (segmentor.* and discriminator.* keys) loads into M alone
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    bdl = MODELS.build(cfg.model)
    torch.save(dict(state_dict=bdl.state_dict()), tmp_path / 'final_model.pth')
    m = build_m(cfg, str(tmp_path / 'final_model.pth'))
    assert all(torch.equal(v, bdl.segmentor.state_dict()[k]) for k, v in m.state_dict().items())
    benchmark = load_tool('analysis_tools/benchmark.py')
    result = benchmark.main([TOY, str(tmp_path / 'final_model.pth'), '--repeat', '2', '--warmup', '1', '--device',
                             'cpu', '--json', str(tmp_path / 'speed.json')])
    assert result['input_shape'] == [3, 128, 256] and result['repeat'] == 2 and result['model'] == 'BDLEncoderDecoder'
    assert result['mean_ms_per_image'] > 0
    assert result['images_per_s'] == pytest.approx(1000 / result['mean_ms_per_image'])
    assert osp.isfile(tmp_path / 'speed.json')
    torch.save(dict(state_dict={'segmentor.nothing': torch.zeros(1)}), tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match='does not fit the config'):
        build_m(cfg, str(tmp_path / 'bad.pth'))
