"""Algorithm 1 (BidirectionalLoop): flagship configs build, the toy pipeline runs every stage in order, a run
killed with SIGKILL inside a stage resumes without retraining anything from scratch, torchrun with 2 CPU
processes completes, and bad settings fail before any training."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from toy_helpers import ROOT, make_converted_toy

TRAIN = osp.join(ROOT, 'tools', 'train.py')
STAGES_K1_N1 = ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1']


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    return make_converted_toy(tmp_path_factory.mktemp('bdl_toy'), num_source=6, num_target_train=4,
                              num_target_val=2)


def write_config(path, toy_root, m_iters=2, ckpt_interval=1, loop_options=''):
    """configs/bdl_toy.py on the test's toy data, K = N = 1, a few iterations per stage."""
    src, tgt = osp.join(toy_root, 'gta5/'), osp.join(toy_root, 'cityscapes/')
    path.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'bdl_toy.py')!r}]
train_dataloader = dict(dataset=dict(source=dict(data_root={src!r}), target=dict(data_root={tgt!r})))
val_dataloader = dict(dataset=dict(data_root={tgt!r}))
test_dataloader = val_dataloader
fast = dict(type='IterBasedTrainLoop', max_iters={m_iters}, val_interval={m_iters})
default_hooks = dict(checkpoint=dict(interval={ckpt_interval}), logger=dict(interval=1))
train_cfg = dict(
    K=1, N=1, {loop_options}
    stages=dict(
        source_only=dict(train_cfg=fast), adaptation=dict(train_cfg=fast), ssl_adaptation=dict(train_cfg=fast),
        translation=dict(cfg_options=dict(
            train_dataloader=dict(dataset=dict(source=dict(data_root={src!r}), target=dict(data_root={tgt!r}))),
            train_cfg=dict(max_epochs=1)))))
''')
    return str(path)


def train_cmd(config, work_dir, *args):
    return [sys.executable, TRAIN, config, '--work-dir', str(work_dir), *args]


def read_state(work_dir):
    with open(osp.join(work_dir, 'bdl_state.json')) as f:
        return json.load(f)


@pytest.mark.parametrize('name',
                         ['bdl_gta5', 'bdl_synthia', 'bdl_gta5_vgg16', 'bdl_synthia_vgg16', 'bdl_gta5_to_bdd100k'])
def test_flagship_configs_build(name, tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))
    assert cfg.train_cfg.type == 'BidirectionalLoop' and (cfg.train_cfg.K, cfg.train_cfg.N) == (2, 2)
    assert cfg.train_cfg.m_init == 'initial'  # release: every M run starts from the initial weights
    assert cfg.train_cfg.stages.pseudo_label.mode == 'class_median'
    assert cfg.train_cfg.stages.ssl_adaptation.train_cfg.max_iters == 120000
    assert cfg.train_cfg.stages.adaptation.train_cfg.max_iters == 80000
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    loop = runner.build_train_loop(cfg.train_cfg)  # derives and builds every stage's model (full size)
    assert [s.name for s in loop.plan][:4] == ['m0', 'k1/translation', 'k1/translate', 'k1/m0']
    assert len(loop.plan) == 1 + 2 * (3 + 2 * 2)
    m_cfg = loop._m_stage_cfg(loop.plan[3], translated_dir='/x/translated', pseudo_label_dir='/x/ssl')
    assert m_cfg.train_dataloader.dataset.source.data_prefix.img_path == '/x/translated'
    assert m_cfg.train_dataloader.dataset.source.data_prefix.seg_map_path  # labels stay with the original source
    assert m_cfg.train_dataloader.dataset.pseudo_label_dir == '/x/ssl'
    f_cfg = loop._translation_cfg(loop.plan[1], '/x/m.pth')
    assert f_cfg.model.segmentor.checkpoint == '/x/m.pth'
    assert f_cfg.model.segmentor.config == cfg.model.segmentor  # F's perceptual loss runs this config's M
    assert not osp.exists(osp.join(tmp_path, 'm0'))  # building trains nothing


@pytest.mark.parametrize('options, message', [
    (['train_cfg.K=0'], 'train_cfg.K must be an integer >= 1'),
    (['train_cfg.N=0'], 'train_cfg.N must be an integer >= 1'),
    (['train_cfg.stages.finetune.train_cfg.max_iters=1'], 'train_cfg.stages.finetune: unknown stage name'),
    (['train_cfg.stages.adaptation.model.segmentor.backbone.depth=7'],
     'train_cfg.stages.adaptation: the stage config does not build'),
    (['train_cfg.stages.translation.config=nowhere.py'], 'train_cfg.stages.translation.*no such file'),
])
def test_bad_settings_fail_before_training(options, message, toy, tmp_path):
    import argparse

    from mmengine.config import DictAction
    config = write_config(tmp_path / 'cfg.py', toy)
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *options]).cfg_options)
    cfg.work_dir = str(tmp_path / 'work')
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        Runner.from_cfg(cfg).train()
    assert not osp.exists(osp.join(tmp_path, 'work', 'm0'))  # no stage started


def test_toy_pipeline_runs_every_stage_in_order(toy, tmp_path):
    config = write_config(tmp_path / 'cfg.py', toy)
    work = tmp_path / 'work'
    proc = subprocess.run(train_cmd(config, work), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = read_state(work)
    assert state['plan'] == STAGES_K1_N1 and list(state['stages']) == STAGES_K1_N1
    assert all(s['status'] == 'done' for s in state['stages'].values())
    # stage outputs: checkpoints, translated images (same names as the source), pseudo labels, metrics
    for name in ('m0', 'k1/m0', 'k1/m1'):
        assert osp.isfile(osp.join(work, name, 'segmentor.pth'))
        assert osp.isfile(osp.join(work, name, 'samples.png'))
        assert 0 <= state['stages'][name]['metrics']['mIoU'] <= 100
    assert sorted(os.listdir(osp.join(work, 'k1/translate'))) == sorted(os.listdir(osp.join(toy, 'gta5/images')))
    assert state['stages']['k1/translate']['counts']['written'] == 6
    summary = json.load(open(osp.join(work, 'k1/ssl1', 'summary.json')))
    assert summary['num_images'] == 4 and 0 <= summary['kept_ratio'] <= 1
    assert state['stages']['k1/m1']['kept_ratio'] == pytest.approx(summary['kept_ratio'])
    # F(1)'s perceptual loss ran through M(0); M_1(1) trained on the translated source and the pseudo labels
    assert state['stages']['k1/translation']['perceptual_m'].endswith('m0/segmentor.pth')
    assert state['stages']['k1/m1']['pseudo_label_dir'].endswith('k1/ssl1')
    assert state['stages']['k1/m1']['translated_dir'].endswith('k1/translate')
    # the results table (paper's Table 2 layout) is written and printed
    table = open(osp.join(work, 'results.md')).read()
    assert [line.split('|')[1].strip() for line in table.splitlines()[2:]] == ['M(0)', 'M_0(1)', 'M_1(1)']
    assert 'M_1(1)' in proc.stdout and 'mIoU16' in proc.stdout
    assert osp.isfile(osp.join(work, 'final_model.pth'))
    # MMSeg-style tools/test.py evaluates the final BDL checkpoint like any segmentor: same mIoU as M_1(1)
    test = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), config,
                           osp.join(work, 'final_model.pth'), '--work-dir', str(tmp_path / 'test')],
                          capture_output=True, text=True, timeout=300)
    assert test.returncode == 0, test.stderr[-3000:]
    assert f"mIoU: {state['stages']['k1/m1']['metrics']['mIoU']:.4f}" in test.stdout + test.stderr
    # without --resume, a work dir with completed stages is refused
    again = subprocess.run(train_cmd(config, work), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and 'pass --resume' in again.stderr


def test_sigkill_inside_a_stage_then_resume(toy, tmp_path):
    config = write_config(tmp_path / 'cfg.py', toy, m_iters=12, ckpt_interval=2)
    work = tmp_path / 'work'
    log = open(tmp_path / 'first.log', 'w')
    proc = subprocess.Popen(train_cmd(config, work), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    marker = osp.join(work, 'k1', 'm0', 'iter_4.pth')  # inside M_0(1), after m0, translation and translate
    deadline = time.time() + 600
    while not osp.exists(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert osp.exists(marker), open(tmp_path / 'first.log').read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = list(read_state(work)['stages'])
    assert done_before == ['m0', 'k1/translation', 'k1/translate']
    mtimes = {n: os.path.getmtime(osp.join(work, n, 'segmentor.pth')) for n in ['m0']}

    resumed = subprocess.run(train_cmd(config, work, '--resume'), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list(read_state(work)['stages']) == STAGES_K1_N1
    out = resumed.stdout + resumed.stderr
    for name in done_before:
        assert f'stage {name} already completed: skipped' in out
    assert 'Auto resumed from the latest checkpoint' in out and 'k1/m0/iter_' in out
    assert 'resumed epoch: 0, iter: ' in out
    assert os.path.getmtime(osp.join(work, 'm0', 'segmentor.pth')) == mtimes['m0']  # M(0) not retrained


def test_two_process_torchrun_on_cpu(toy, tmp_path):
    config = write_config(tmp_path / 'cfg.py', toy)
    work = tmp_path / 'work'
    # through the README's launcher script (torchrun), 2 processes, gloo on the CPU
    env = dict(os.environ, PYTHON=sys.executable, PORT='29531')
    cmd = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config, '2', '--work-dir', str(work), '--cfg-options',
           'env_cfg.dist_cfg.backend=gloo']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    state = read_state(work)
    assert list(state['stages']) == STAGES_K1_N1
    # translation and pseudo labelling were split across the ranks and still cover every image once
    assert sorted(os.listdir(osp.join(work, 'k1/translate'))) == sorted(os.listdir(osp.join(toy, 'gta5/images')))
    assert json.load(open(osp.join(work, 'k1/ssl1', 'summary.json')))['num_images'] == 4
    assert 'Distributed training: True' in proc.stdout + proc.stderr
    # checkpoints written by the distributed run load into plain models: no DDP `module.` in the keys
    import torch
    for name in ('k1/m1/final_model.pth', 'k1/translation/final_model.pth', 'final_model.pth'):
        keys = torch.load(osp.join(work, name), weights_only=True)['state_dict']
        assert keys and not any('module.' in k for k in keys), name


def test_ablations_and_imported_source_only(toy, tmp_path):
    """No translation, no SSL, no D_M, and a given M(0) checkpoint (plain segmentor keys) instead of training."""
    import torch
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(write_config(tmp_path / 'cfg.py', toy))
    m0 = MODELS.build(cfg.model.segmentor)
    torch.save(dict(state_dict=m0.state_dict()), tmp_path / 'm0.pth')
    m0_path = str(tmp_path / 'm0.pth')
    config = write_config(tmp_path / 'ablation.py', toy, loop_options=(
        f'use_translation=False, use_ssl=False, adversarial=False, source_only_checkpoint={m0_path!r},'))
    work = tmp_path / 'work'
    proc = subprocess.run(train_cmd(config, work), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = read_state(work)
    assert list(state['stages']) == ['m0', 'k1/m0']
    assert state['stages']['m0']['imported'] == str(tmp_path / 'm0.pth')
    assert state['stages']['k1/m0']['translated_dir'] is None  # M trained on the original source
    # the imported weights are exactly M(0)
    exported = torch.load(osp.join(work, 'm0', 'segmentor.pth'), weights_only=True)['state_dict']
    assert all(torch.equal(exported[k], v) for k, v in m0.state_dict().items())
    # no D_M update: its parameters stay at the initial weights
    init = torch.load(osp.join(work, 'init_weights.pth'), weights_only=True)['state_dict']
    final = torch.load(osp.join(work, 'k1/m0', 'final_model.pth'), weights_only=True)['state_dict']
    d_keys = [k for k in init if k.startswith('discriminator.')]
    assert d_keys and all(torch.equal(init[k], final[k]) for k in d_keys)
    assert not any(torch.equal(init[k], final[k]) for k in final if k.endswith('conv2d_list.0.weight'))
