"""Algorithm 1 (BidirectionalLoop): flagship configs build, the toy pipeline runs every stage in order, a run
killed with SIGKILL inside a stage resumes without retraining anything from scratch, torchrun with 2 CPU
processes completes, and bad settings fail before any training."""
import glob
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
from toy_helpers import ROOT, write_bdl_config

from bdl_mm.engine.run_status import run_status

TRAIN = osp.join(ROOT, 'tools', 'train.py')
STAGES_K1_N1 = ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1']


@pytest.fixture
def toy(toy_root):
    return toy_root  # the session's toy pair (6 source, 4 target train, 2 target val; tests/conftest.py)


write_config = write_bdl_config  # configs/bdl_toy.py on the test's toy data, K = N = 1, a few iterations


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
    m_cfg = loop.configs.m_stage_cfg(loop.plan[3], translated_dir='/x/translated', pseudo_label_dir='/x/ssl')
    assert m_cfg.train_dataloader.dataset.source.data_prefix.img_path == '/x/translated'
    assert m_cfg.train_dataloader.dataset.source.data_prefix.seg_map_path  # labels stay with the original source
    assert m_cfg.train_dataloader.dataset.pseudo_label_dir == '/x/ssl'
    f_cfg = loop.configs.translation_cfg(loop.plan[1], '/x/m.pth')
    assert f_cfg.model.segmentor.checkpoint == '/x/m.pth'
    assert f_cfg.model.segmentor.config == cfg.model.segmentor  # F's perceptual loss runs this config's M
    assert not osp.exists(osp.join(tmp_path, 'm0'))  # building trains nothing


# the plan's own settings (K, N, stage names ...) are checked in test_plan.py::test_bad_settings_fail_in_one_line;
# these need the loop to build each stage's config before the first stage
@pytest.mark.parametrize('options, message', [
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
    assert sorted(n for n in os.listdir(osp.join(work, 'k1/translate')) if n != 'diagnostics.json') == sorted(
        os.listdir(osp.join(toy, 'gta5/images')))
    assert state['stages']['k1/translate']['counts']['written'] == 6
    summary = json.load(open(osp.join(work, 'k1/ssl1', 'summary.json')))
    assert summary['num_images'] == 4 and 0 <= summary['kept_ratio'] <= 1
    assert state['stages']['k1/m1']['kept_ratio'] == pytest.approx(summary['kept_ratio'])
    # F(1)'s perceptual loss ran through M(0); M_1(1) trained on the translated source and the pseudo labels
    assert state['stages']['k1/translation']['perceptual_m'].endswith('m0/segmentor.pth')
    assert state['stages']['k1/m1']['pseudo_label_dir'].endswith('k1/ssl1')
    assert state['stages']['k1/m1']['translated_dir'].endswith('k1/translate')
    assert 'loss_per' in _stage_logs(work, 'k1/translation')  # F's perceptual terms through M(0)
    # the loop hands each M stage the checkpoint the plan names (bdl_toy.py: m_init='source_only', from M(0))
    for stage in ('k1/m0', 'k1/m1'):
        assert f'Load checkpoint from {work}/m0/final_model.pth' in _stage_logs(work, stage)
        assert 'init_weights.pth' not in _stage_logs(work, stage)
    # the results table (paper's Table 2 layout) is written and printed
    table = open(osp.join(work, 'results.md')).read()
    stages_table = table.split('\n\n')[0]  # then the diagnostics tables
    assert [line.split('|')[1].strip() for line in stages_table.splitlines()[2:]] == ['M(0)', 'M_0(1)', 'M_1(1)']
    assert 'M_1(1)' in proc.stdout and 'mIoU16' in proc.stdout
    import torch
    assert torch.load(osp.join(work, 'final_model.pth'), weights_only=False)['meta']['stage'] == 'M_1(1)'  # plan.final
    check_concise_console_tensorboard_and_status(proc.stdout, work, state)
    # MMSeg-style tools/test.py evaluates the final BDL checkpoint like any segmentor: same mIoU as M_1(1)
    test = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), config,
                           osp.join(work, 'final_model.pth'), '--work-dir', str(tmp_path / 'test')],
                          capture_output=True, text=True, timeout=300)
    assert test.returncode == 0, test.stderr[-3000:]
    assert f"mIoU: {state['stages']['k1/m1']['metrics']['mIoU']:.4f}" in test.stdout + test.stderr
    # without --resume, a work dir with completed stages is refused
    again = subprocess.run(train_cmd(config, work), capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and 'pass --resume' in again.stderr


def check_concise_console_tensorboard_and_status(stdout, work, state):
    """The console of a toy run (K = N = 1, 2 iterations per M stage, logger interval 1; F logs every 120
    iterations: its last one), its TensorBoard scalars and tools/status.py after completion."""
    lines = stdout.splitlines()
    assert sum('[BDL] stage ' in line and ' -> ' in line for line in lines) == 6  # one line per stage start
    assert sum('[BDL] stage ' in line and ' done in ' in line for line in lines) == 6  # and end
    assert [sum(f'[BDL] {s} iter ' in line for line in lines) for s in ('m0', 'k1/translation', 'k1/m0', 'k1/m1')] == [
        2, 1, 2, 2]
    assert sum(line.startswith('| M_1(1) |') for line in lines) == 1  # the table, once
    # the results table and its diagnostics tables, printed once
    assert 'System environment' not in stdout and 'Iter(train)' not in stdout and len(lines) < 70, stdout
    for name in ('m0', 'k1/translation', 'k1/m0', 'k1/m1'):  # the environment, config and mmengine lines: in the files
        log = ''.join(open(p).read() for p in glob.glob(osp.join(work, name, '*', '*.log')))
        assert 'System environment' in log and 'Config:' in log and '(train)' in log, name
        assert len(glob.glob(osp.join(work, name, '*', 'vis_data', 'scalars.json'))) == 1, name  # its own scalars
    # planned work for tools/status.py: M max_iters; F 1 epoch x ceil(6 images / batch 4); 6 source, 4 target images
    assert [(d['units'], d['unit']) for d in state['plan_details']] == [
        (2, 'iter'), (2, 'iter'), (6, 'image'), (2, 'iter'), (4, 'image'), (2, 'iter')]
    # every stage's scalars in one TensorBoard run, tagged by stage
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(osp.join(work, 'vis_data'))
    events.Reload()
    assert [e.step for e in events.Scalars('m0/src.decode.loss_ce')] == [1, 2]
    assert [e.step for e in events.Scalars('k1/m1/tgt.loss_ssl')] == [1, 2]
    assert [e.step for e in events.Scalars('k1/translation/loss')] == [state['plan_details'][1]['units']]
    assert events.Scalars('k1/m1/mIoU')[-1].value == pytest.approx(state['stages']['k1/m1']['metrics']['mIoU'])
    status = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'status.py'), str(work), '--json'],
                            capture_output=True, text=True, timeout=60)
    s = json.loads(status.stdout)
    assert s['state'] == 'finished' and [st['state'] for st in s['stages']] == ['done'] * 6 and s['eta_s'] == 0
    assert s['kept_ratios'] == {'k1/ssl1': state['stages']['k1/ssl1']['kept_ratio']}
    assert s['final_model']['exists'] and s['final_model']['label'] == 'M_1(1)'


def test_sigkill_inside_a_stage_then_resume(toy, tmp_path):
    config = write_config(tmp_path / 'cfg.py', toy, m_iters=12, ckpt_interval=2)
    work = tmp_path / 'work'
    log = open(tmp_path / 'first.log', 'w')
    proc = subprocess.Popen(train_cmd(config, work), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pointer = osp.join(work, 'k1', 'm0', 'last_checkpoint')  # inside M_0(1), after m0, translation and translate

    def newest_step():
        try:
            return int(open(pointer).read().strip().rsplit('iter_', 1)[1][:-len('.pth')])
        except (OSError, IndexError, ValueError):
            return 0

    deadline = time.time() + 600
    while newest_step() < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert newest_step() >= 4, open(tmp_path / 'first.log').read()[-3000:]
    live = run_status(str(work))  # tools/status.py while the run is going
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert live['state'] == 'running' and live['running']['stage'] == 'k1/m0' and live['running']['alive']
    assert [s['state'] for s in live['stages']] == ['done'] * 3 + ['running', 'pending', 'pending']
    progress = live['stages'][3]['progress']
    assert progress['total'] == 12 and 4 <= progress['done'] <= 12 and progress['last_log_s_ago'] < 60
    assert 0 < live['eta_s'] < 600 and not live['eta_unmeasured']  # measured: M(0), F and S' done, M_0(1) running
    killed = run_status(str(work))
    assert killed['state'] == 'interrupted' and [s['state'] for s in killed['stages']][3] == 'interrupted'
    # live results: the table so far survives the kill
    assert open(osp.join(work, 'results.md')).read().endswith('partial: 3 of 6 stages done\n')
    assert [r['model'] for r in json.load(open(osp.join(work, 'results.json')))['rows']] == ['M(0)']
    done_before = list(read_state(work)['stages'])
    assert done_before == ['m0', 'k1/translation', 'k1/translate']
    mtimes = {n: os.path.getmtime(osp.join(work, n, 'segmentor.pth')) for n in ['m0']}
    # the newest checkpoint torn as a kill, a full disk or a bad copy leaves it: the stage resumes from the newest
    # readable one, naming the torn file
    newest = open(pointer).read().strip()
    others = [int(p.rsplit('iter_', 1)[1][:-len('.pth')]) for p in glob.glob(osp.join(work, 'k1', 'm0', 'iter_*.pth'))
              if p != newest]
    assert others  # at least two whole checkpoints at every moment of a stage
    with open(newest, 'r+b') as f:
        f.truncate(osp.getsize(newest) // 2)

    resumed = subprocess.run(train_cmd(config, work, '--resume'), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list(read_state(work)['stages']) == STAGES_K1_N1
    out = resumed.stdout + resumed.stderr
    for name in done_before:
        assert f'stage {name} already completed: skipped' in out
    assert f'[BDL] checkpoint {newest} is unreadable' in out
    assert f'[BDL] k1/m0 resumed at iter {max(others)}/' in out  # the console; mmengine's lines are in the log file
    assert 'taking over the lock of pid' in out and 'no longer running' in out  # the killed run's lock
    stage_log = ''.join(open(p).read() for p in glob.glob(osp.join(work, 'k1', 'm0', '*', '*.log')))
    assert f'resumed epoch: 0, iter: {max(others)}' in stage_log
    assert run_status(str(work))['state'] == 'finished'
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
    assert sorted(n for n in os.listdir(osp.join(work, 'k1/translate')) if n != 'diagnostics.json') == sorted(
        os.listdir(osp.join(toy, 'gta5/images')))
    assert json.load(open(osp.join(work, 'k1/ssl1', 'summary.json')))['num_images'] == 4
    m0_log = ''.join(open(p).read() for p in glob.glob(osp.join(work, 'm0', '*', '*.log')))  # the console is concise
    assert 'Distributed training: True' in m0_log
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


def test_ssl_from_previous_round_trains_m0_of_round_two_on_labels_of_m1(toy, tmp_path):
    """ssl_from_previous_round (K=2, N=1, no translation to keep it short): k2/ssl0 labels T with M(1) = M_1(1), and
    M_0(2) starts from M_1(1) and trains on those labels (its SSL loss is logged); round 1's M_0(1) has none."""
    config = write_config(tmp_path / 'cfg.py', toy, extra=(
        "train_cfg.update(K=2, use_translation=False, m_init='previous', ssl_from_previous_round=True)"))
    work = tmp_path / 'work'
    proc = subprocess.run(train_cmd(config, work), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = read_state(work)
    assert list(state['stages']) == ['m0', 'k1/m0', 'k1/ssl1', 'k1/m1', 'k2/ssl0', 'k2/m0', 'k2/ssl1', 'k2/m1']
    assert state['stages']['k2/m0']['pseudo_label_dir'].endswith('k2/ssl0')
    assert state['stages']['k1/m0'].get('pseudo_label_dir') is None
    summary = json.load(open(osp.join(work, 'k2/ssl0', 'summary.json')))
    assert summary['num_images'] == 4 and state['stages']['k2/m0']['kept_ratio'] == pytest.approx(
        summary['kept_ratio'])
    assert f'Load checkpoint from {work}/k1/m1/final_model.pth' in _stage_logs(work, 'k2/m0')
    assert 'loss_ssl' in _stage_logs(work, 'k2/m0') and 'loss_ssl' not in _stage_logs(work, 'k1/m0')


def _stage_logs(work, stage):
    import glob
    return ''.join(open(p).read() for p in glob.glob(osp.join(work, stage, '*', '*.log')))


def _initial_weights(cfg_path, tmp_path, name):
    """The outer model's weights as Runner.train leaves them before the first stage: loop built, then weight init."""
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp_path / name)
    runner = Runner.from_cfg(cfg)
    runner._train_loop = runner.build_train_loop(cfg.train_cfg)  # builds every stage's model once (a check)
    runner._init_model_weights()
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_initial_weights_do_not_depend_on_fs_settings(toy, tmp_path):
    """The loop builds F's model as a check before the runner draws M's initial weights: F's discriminator size (a
    70 or a 16 pixel PatchGAN) must not change M(0)'s start (before the fix: 20 of the toy run's 138 tensors)."""
    import torch
    f_d = "train_cfg['stages']['translation']['cfg_options']['model'] = dict(discriminator=dict(num_conv={}))"
    weights = [_initial_weights(write_config(tmp_path / f'd{n}.py', toy, extra=f_d.format(n)), tmp_path, f'w{n}')
               for n in (3, 1)]
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 100
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # and the seed still decides them
    other = write_config(tmp_path / 'seed1.py', toy, extra=f_d.format(3) + '\nrandomness = dict(seed=1)')
    assert not torch.equal(*[w['segmentor.backbone.conv1.weight'] for w in (weights[0], _initial_weights(
        other, tmp_path, 'seed1'))])
