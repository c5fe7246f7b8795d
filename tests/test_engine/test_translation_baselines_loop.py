"""Translation baselines in Algorithm 1 (``train_cfg.stages.translation.type``) and one data root per dataset: the
translation stage (F or a baseline) reads M's source and target folders. A toy FDA plan runs end to end, an unknown
type fails before training naming the key, FDA's translated source is reused by later rounds, and the flagship and
toy configs train F on the same folders as before."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import mmcv
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmseg.registry import DATASETS
from toy_helpers import ROOT, load_tool, reinhard_by_hand

from bdl_mm.engine.stage_configs import StageConfigBuilder
from bdl_mm.engine.stages import STAGE_RUNNERS
from bdl_mm.models.translators import FDATranslator
from bdl_mm.structures.plan import build_plan

TRAIN = osp.join(ROOT, 'tools', 'train.py')
STAGES_K1_N1 = ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1']


@pytest.fixture(scope='module')
def toy(toy_root):
    return toy_root  # the session's toy pair (tests/conftest.py)


def write_config(path, toy_root, base='bdl_toy_fda.py', K=1, extra=''):
    """A toy config on the test's data: each data root is written once (M's datasets), K rounds, N = 1."""
    src, tgt = osp.join(toy_root, 'gta5/'), osp.join(toy_root, 'cityscapes/')
    path.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', base)!r}]
train_dataloader = dict(dataset=dict(source=dict(data_root={src!r}), target=dict(data_root={tgt!r})))
val_dataloader = dict(dataset=dict(data_root={tgt!r}))
test_dataloader = val_dataloader
fast = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
train_cfg = dict(K={K}, N=1, references=None,
                 stages=dict(source_only=dict(train_cfg=fast), adaptation=dict(train_cfg=fast),
                             ssl_adaptation=dict(train_cfg=fast)))
{extra}
''')
    return str(path)


def build_loop(config, work_dir, *options):
    cfg = Config.fromfile(config)
    for option in options:
        cfg.merge_from_dict(option)
    cfg.work_dir = str(work_dir)
    runner = Runner.from_cfg(cfg)
    return runner.build_train_loop(cfg.train_cfg)


def train(config, work):
    """Run tools/train.py on a config into ``work``; its bdl_state.json."""
    proc = subprocess.run([sys.executable, TRAIN, config, '--work-dir', str(work)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(osp.join(work, 'bdl_state.json')) as f:
        return json.load(f)


def train_set(run, stage):
    """The train set of an M stage of a run: its dumped config's, built as the stage's runner built it."""
    cfg = Config.fromfile(osp.join(run, stage, 'cfg.py'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        return DATASETS.build(cfg.train_dataloader.dataset)


def test_toy_fda_plan_runs_every_stage(toy, tmp_path):
    config = write_config(tmp_path / 'cfg.py', toy)
    work = tmp_path / 'work'
    state = train(config, work)
    assert state['plan'] == STAGES_K1_N1 and list(state['stages']) == STAGES_K1_N1
    assert all(s['status'] == 'done' for s in state['stages'].values())
    # the translation stage trained nothing: it recorded FDA's settings and the target images (M's target folder)
    record_path = osp.join(work, 'k1/translation', 'translator.json')
    assert state['stages']['k1/translation']['translator'] == record_path
    assert not [n for n in os.listdir(osp.join(work, 'k1/translation')) if n.endswith('.pth')]
    with open(record_path) as f:
        record = json.load(f)
    assert record['type'] == 'FDATranslator' and record['settings']['beta'] == 0.01
    target_dir = osp.join(toy, 'cityscapes', 'leftImg8bit', 'train')
    expected = sorted(osp.join(d, n) for d, _, files in os.walk(target_dir) for n in files
                      if n.endswith('_leftImg8bit.png'))
    assert len(expected) == 4 and record['state']['target_paths'] == expected
    # S'(1): every source image, by its name, each exactly FDA of the source with the target drawn for it
    src_dir = osp.join(toy, 'gta5', 'images')
    names = sorted(os.listdir(src_dir))
    assert sorted(os.listdir(osp.join(work, 'k1/translate'))) == names + ['diagnostics.json']  # and its diagnostics
    fda = FDATranslator(beta=0.01)
    fda.fit(expected)
    for name in names[:2]:
        out = cv2.imread(osp.join(work, 'k1/translate', name))
        np.testing.assert_array_equal(out, fda.translate(cv2.imread(osp.join(src_dir, name)), name))
    assert state['stages']['k1/m1']['translated_dir'] == osp.join(work, 'k1/translate')
    table = open(osp.join(work, 'results.md')).read()
    stages_table = table.split('\n\n')[0]  # then the diagnostics tables
    assert [line.split('|')[1].strip() for line in stages_table.splitlines()[2:]] == ['M(0)', 'M_0(1)', 'M_1(1)']
    for name in ('m0', 'k1/m0', 'k1/m1'):
        assert 0 <= state['stages'][name]['metrics']['mIoU'] <= 100


@pytest.mark.parametrize('options, message', [
    (dict(train_cfg=dict(stages=dict(translation=dict(type='CycleGANish')))),
     r"^train_cfg\.stages\.translation\.type: unknown translation type 'CycleGANish'; known: FDA, FDATranslator, "
     r'Reinhard, ReinhardColourTransfer'),
    (dict(train_cfg=dict(stages=dict(translation=dict(beta=0.7)))),
     r'^train_cfg\.stages\.translation: the translation baseline does not build: ValueError: FDA: beta must be'),
])
def test_bad_translation_settings_fail_before_training(options, message, toy, tmp_path):
    config = write_config(tmp_path / 'cfg.py', toy)
    with pytest.raises(ValueError, match=message) as info:
        build_loop(config, tmp_path / 'work', options)
    assert '\n' not in str(info.value)  # one line
    assert not osp.exists(osp.join(tmp_path, 'work', 'm0'))


def run_stage(loop, name, **inputs):
    """One stage of ``loop``'s plan through its function in STAGE_RUNNERS, with the given input records."""
    stage = loop.plan.get(name)
    return STAGE_RUNNERS[stage.kind](loop.context, stage, inputs)


def test_fda_translation_reused_by_later_rounds(toy, tmp_path):
    """FDA does not depend on M: S'(2) is S'(1) (checked complete, not rewritten)."""
    config = write_config(tmp_path / 'cfg.py', toy, K=2)
    loop = build_loop(config, tmp_path / 'work', dict(train_cfg=dict(diagnostics=False)))
    assert [s.name for s in loop.plan if s.kind == 'translate'] == ['k1/translate', 'k2/translate']
    assert loop.plan.get('k2/translate').translator == 'k2/translation'
    f1 = run_stage(loop, 'k1/translation')
    first = run_stage(loop, 'k1/translate', translator=f1)
    assert first['counts']['written'] == 6 and 'reused_from' not in first
    loop.state['k1/translate'] = dict(first, status='done')
    f2 = run_stage(loop, 'k2/translation')
    second = run_stage(loop, 'k2/translate', translator=f2)
    assert second['reused_from'] == 'k1/translate' and second['translated_dir'] == first['translated_dir']
    assert (second['counts']['written'], second['counts']['existing']) == (0, 6)
    # another beta is another translation
    other = build_loop(config, tmp_path / 'work', dict(train_cfg=dict(
        diagnostics=False, stages=dict(translation=dict(type='FDA', beta=0.05)))))
    other.state['k1/translate'] = dict(first, status='done')
    f3 = run_stage(other, 'k2/translation')
    third = run_stage(other, 'k2/translate', translator=f3)
    assert 'reused_from' not in third and third['counts']['written'] == 6
    assert third['translated_dir'] == osp.join(tmp_path, 'work', 'k2/translate')


# F's folders before part 5 of issue 11 (then written in the translation configs and in each pair's cfg_options)
PREVIOUS_F_FOLDERS = {
    'bdl_gta5': ('data/gta5/images', '.png', 'data/cityscapes/leftImg8bit/train', '_leftImg8bit.png'),
    'bdl_gta5_vgg16': ('data/gta5/images', '.png', 'data/cityscapes/leftImg8bit/train', '_leftImg8bit.png'),
    'bdl_synthia': ('data/synthia/RGB', '.png', 'data/cityscapes/leftImg8bit/train', '_leftImg8bit.png'),
    'bdl_synthia_vgg16': ('data/synthia/RGB', '.png', 'data/cityscapes/leftImg8bit/train', '_leftImg8bit.png'),
    'bdl_gta5_to_bdd100k': ('data/gta5/images', '.png', 'data/bdd100k/images/10k/train', '.jpg'),
    'bdl_toy': ('data/toy/gta5/images', '.png', 'data/toy/cityscapes/leftImg8bit/train', '_leftImg8bit.png'),
    'bdl_toy_fda': ('data/toy/gta5/images', '.png', 'data/toy/cityscapes/leftImg8bit/train', '_leftImg8bit.png'),
    'bdl_gta5_fda': ('data/gta5/images', '.png', 'data/cityscapes/leftImg8bit/train', '_leftImg8bit.png'),
}


def configs_of(cfg):
    """The stage config builder of a config, without a runner (no model is built)."""
    return StageConfigBuilder(cfg, build_plan(cfg.train_cfg), '/tmp/unused')


def f_folders(cfg):
    configs = configs_of(cfg)
    dataset = configs.translation_cfg(configs.plan.get('k1/translation'), None).train_dataloader.dataset
    out = ()
    for side in ('source', 'target'):
        d = dataset[side]
        out += (osp.normpath(osp.join(d['data_root'], d.get('img_dir', ''))), d.get('img_suffix', '.png'))
    return out


@pytest.mark.parametrize('name', sorted(PREVIOUS_F_FOLDERS))
def test_f_reads_the_same_folders_as_before(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))
    assert f_folders(cfg) == PREVIOUS_F_FOLDERS[name]


def test_one_data_root_per_dataset(tmp_path):
    """Moving the data by inheritance (M's roots only) moves F's and the baselines' folders; an explicit
    cfg_options folder still wins for its side."""
    path = tmp_path / 'moved.py'
    path.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'bdl_gta5.py')!r}]
train_dataloader = dict(dataset=dict(source=dict(data_root='/mnt/x/gta5/'),
                                     target=dict(data_root='/mnt/y/cs/', data_prefix=dict(img_path='imgs'))))
''')
    cfg = Config.fromfile(str(path))
    assert f_folders(cfg) == ('/mnt/x/gta5/images', '.png', '/mnt/y/cs/imgs', '_leftImg8bit.png')
    cfg.merge_from_dict({'train_cfg.stages.translation.cfg_options': dict(
        train_dataloader=dict(dataset=dict(target=dict(data_root='/elsewhere', img_dir='t'))))})
    assert f_folders(cfg) == ('/mnt/x/gta5/images', '.png', '/elsewhere/t', '_leftImg8bit.png')
    cfg.merge_from_dict({'train_cfg.stages.translation.type': 'Reinhard'})  # a baseline: always M's folders
    assert f_folders(cfg) == ('/mnt/x/gta5/images', '.png', '/mnt/y/cs/imgs', '_leftImg8bit.png')
    configs = configs_of(cfg)
    f_cfg = configs.translation_cfg(configs.plan.get('k1/translation'), None)
    assert f_cfg.model == dict(type='Reinhard')  # F's config file and cfg_options do not apply to a baseline


def test_gta5_fda_builds(tmp_path):
    loop = build_loop(osp.join(ROOT, 'configs', 'bdl_gta5_fda.py'), tmp_path)  # builds every M stage, full size
    assert [s.name for s in loop.plan] == ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1',
                                           'k1/ssl2', 'k1/m2']  # K = 1: a second round would repeat the first
    f_cfg = loop.configs.translation_cfg(loop.plan[1], None)
    assert f_cfg.model == dict(type='FDA', beta=0.01)
    assert not osp.exists(osp.join(tmp_path, 'm0'))


def test_ssl_untranslated_source_on_a_branch_of_a_finished_run(toy, tmp_path):
    """tools/branch_run.py and train_cfg.ssl_untranslated_source, end to end (FDA in F's place): a finished run is
    branched before its SSL round and the branch resumed with the switch (--force-resume). M(0), S'(1) and M_0(1) are
    kept, not retrained; M_1(1) trains on a source set of S'(1) and the untranslated S (twice the source images, the
    same labels), where the release's M_1(1) had S'(1) alone."""
    config = write_config(tmp_path / 'cfg.py', toy)
    work, branch = tmp_path / 'work', tmp_path / 'branch'
    train(config, work)
    assert len(train_set(work, 'k1/m1')) == 6
    load_tool('branch_run.py').branch(str(work), str(branch), ['k1/ssl1'])
    m0_weights = open(osp.join(branch, 'k1/m0', 'final_model.pth'), 'rb').read()
    proc = subprocess.run([sys.executable, TRAIN, config, '--work-dir', str(branch), '--resume', '--force-resume',
                           '--cfg-options', 'train_cfg.ssl_untranslated_source=True'],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(osp.join(branch, 'bdl_state.json')) as f:
        state = json.load(f)
    assert list(state['stages']) == STAGES_K1_N1 and state['final_model']['stage'] == 'k1/m1'
    assert "M_1(1) on S'(1) + S + T + pseudo labels" in [d['what'] for d in state['plan_details']]
    for name in ('m0', 'k1/translate', 'k1/m0'):  # kept: read from the branch, not retrained
        assert f'stage {name} already completed: skipped' in proc.stdout + proc.stderr
    assert open(osp.join(branch, 'k1/m0', 'final_model.pth'), 'rb').read() == m0_weights
    assert state['stages']['k1/m1']['translated_dir'] == osp.join(branch, 'k1/translate')
    with open(osp.join(branch, 'bdl_config.json')) as f:
        assert 'train_cfg.ssl_untranslated_source' in json.dumps(f.read())  # the forced change, recorded
    ssl, plain = train_set(branch, 'k1/m1'), train_set(branch, 'k1/m0')
    assert len(plain) == 6 and plain.untranslated_source is None
    assert len(ssl) == 12 and ssl.untranslated_source is not None
    assert ssl[0]['source']['data_samples'].img_path.startswith(osp.join(str(branch), 'k1/translate'))
    original = ssl[6]['source']['data_samples']
    assert original.img_path.startswith(osp.join(toy, 'gta5', 'images'))
    assert original.seg_map_path == ssl[0]['source']['data_samples'].seg_map_path


def test_ssl_baseline_source_trains_ssl_stages_on_s_prime_and_the_baseline_s_copy(toy, tmp_path):
    """train_cfg.ssl_baseline_source (ledger row 21), end to end (FDA in F's place, Reinhard as the SSL stages'
    second copy): the first SSL stage writes Reinhard(S), fitted on M's target images (checked against the transfer
    computed here by hand), into <work_dir>/ssl_baseline_source; M_1(1) trains on S'(1) and that copy with S's labels
    (twice the source images), M_0(1) on S'(1) alone."""
    from bdl_mm.models.translators.translation_baseline import read_image
    config = write_config(tmp_path / 'cfg.py', toy, extra="train_cfg.update(ssl_baseline_source=dict(type='Reinhard'))")
    work = tmp_path / 'work'
    state = train(config, work)
    assert list(state['stages']) == STAGES_K1_N1
    assert "M_1(1) on S'(1) + Reinhard(S) + T + pseudo labels" in [d['what'] for d in state['plan_details']]
    folder = osp.join(work, 'ssl_baseline_source')
    src_dir, tgt_dir = osp.join(toy, 'gta5/images'), osp.join(toy, 'cityscapes/leftImg8bit/train')
    names = sorted(os.listdir(src_dir))
    assert sorted(n for n in os.listdir(folder) if n != 'record.json') == names
    targets = sorted(osp.join(d, n) for d, _, fs in os.walk(tgt_dir) for n in fs if n.endswith('.png'))
    for name in names:  # written at M's source scale, 256x144 (the toy's S: 320x144)
        got = read_image(osp.join(folder, name)).astype(np.float64)
        assert got.shape == (144, 256, 3)
        want = np.round(reinhard_by_hand(osp.join(src_dir, name), targets)).clip(0, 255).astype(np.uint8)
        want = mmcv.imresize(want, (256, 144), interpolation='bicubic', backend='pillow').astype(np.float64)
        assert np.abs(got - want).max() <= 2  # the hand transfer is within 1 before the resize
        source = mmcv.imresize(read_image(osp.join(src_dir, name)), (256, 144), interpolation='bicubic',
                               backend='pillow')
        assert np.abs(got - source).mean() > 5  # the colours did move
    with open(osp.join(folder, 'record.json')) as f:
        record = json.load(f)
    assert record['requested'] == dict(type='Reinhard') and record['num_target_images'] == len(targets)
    ssl, plain = train_set(work, 'k1/m1'), train_set(work, 'k1/m0')
    assert len(plain) == 6 and plain.untranslated_source is None
    assert len(ssl) == 12 and ssl[0]['source']['data_samples'].img_path.startswith(osp.join(str(work), 'k1/translate'))
    second = ssl[6]['source']['data_samples']
    assert second.img_path == osp.join(folder, osp.basename(second.img_path))
    assert second.seg_map_path == ssl[0]['source']['data_samples'].seg_map_path  # S's labels
    # train_cfg.ssl_second_source_share=1 on a branch before the SSL round (branch_run --link): M_1(1) on B(S) alone,
    # the branch's B(S) the run's own files (hard links), M_0(1) kept
    branch = tmp_path / 'branch'
    load_tool('branch_run.py').branch(str(work), str(branch), ['k1/ssl1'], link=True)
    linked = osp.join(branch, 'ssl_baseline_source', names[0])
    assert os.stat(linked).st_ino == os.stat(osp.join(folder, names[0])).st_ino
    proc = subprocess.run([sys.executable, TRAIN, config, '--work-dir', str(branch), '--resume', '--force-resume',
                           '--cfg-options', 'train_cfg.ssl_second_source_share=1'],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(osp.join(branch, 'bdl_state.json')) as f:
        assert 'M_1(1) on Reinhard(S) + T + pseudo labels' in [d['what'] for d in json.load(f)['plan_details']]
    alone = train_set(branch, 'k1/m1')
    assert len(alone) == 6 and len(train_set(branch, 'k1/m0')) == 6
    assert [osp.dirname(alone[i]['source']['data_samples'].img_path) for i in range(6)] == [
        osp.join(str(branch), 'ssl_baseline_source')] * 6


def test_second_source_all_stages_trains_m0_on_s_prime_and_the_baseline_copy(toy, tmp_path):
    """train_cfg.second_source_all_stages (row 22), end to end without SSL (FDA in F's place): M_0(1), the run's
    first adaptation stage, writes B(S) itself and trains on S'(1) and B(S) (twice the source images)."""
    config = write_config(tmp_path / 'cfg.py', toy, extra="train_cfg.update(use_ssl=False, second_source_all_stages="
                                                         "True, ssl_baseline_source=dict(type='Reinhard'))")
    work = tmp_path / 'work'
    state = train(config, work)
    assert list(state['stages']) == ['m0', 'k1/translation', 'k1/translate', 'k1/m0']
    assert "M_0(1) on S'(1) + Reinhard(S) + T" in [d['what'] for d in state['plan_details']]
    folder = osp.join(work, 'ssl_baseline_source')
    assert len([n for n in os.listdir(folder) if n.endswith('.png')]) == 6
    m0 = train_set(work, 'k1/m0')
    assert len(m0) == 12 and m0[0]['source']['data_samples'].img_path.startswith(osp.join(str(work), 'k1/translate'))
    assert osp.dirname(m0[6]['source']['data_samples'].img_path) == folder
    assert m0[6]['source']['data_samples'].seg_map_path == m0[0]['source']['data_samples'].seg_map_path


def test_ssl_baseline_source_is_fitted_once_and_completed_on_resume(toy, tmp_path):
    """The copy of row 21 is written once per run: a later call keeps the record fitted with the same settings on
    the same target folder and writes only the missing images (an interrupted copy); other settings fit again."""
    from bdl_mm.engine.stages import StageContext
    from bdl_mm.engine.stages.translation import write_ssl_baseline_source
    cfg = Config.fromfile(write_config(tmp_path / 'cfg.py', toy))
    cfg.train_cfg.ssl_baseline_source = dict(type='Reinhard')
    configs = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), str(tmp_path / 'run'))
    ctx = StageContext(configs, configs.plan)
    assert write_ssl_baseline_source(ctx)['written'] == 6
    folder = osp.join(tmp_path, 'run', 'ssl_baseline_source')
    record_time = os.stat(osp.join(folder, 'record.json')).st_mtime_ns
    os.remove(osp.join(folder, sorted(os.listdir(folder))[0]))  # an image the interrupted copy had not written
    counts = write_ssl_baseline_source(ctx)
    assert (counts['existing'], counts['written']) == (5, 1)
    assert os.stat(osp.join(folder, 'record.json')).st_mtime_ns == record_time  # not fitted again
    configs.plan = build_plan(dict(cfg.train_cfg, ssl_baseline_source=dict(type='Reinhard', colour_space='rgb')))
    write_ssl_baseline_source(StageContext(configs, configs.plan))
    with open(osp.join(folder, 'record.json')) as f:
        assert json.load(f)['requested'] == dict(type='Reinhard', colour_space='rgb')


@pytest.mark.parametrize('options, message', [
    (dict(ssl_baseline_source=dict(type='Nothing')), r'ssl_baseline_source: expected None or dict\(type=.*Reinhard'),
    (dict(ssl_baseline_source='Reinhard'), r'train_cfg\.ssl_baseline_source: expected'),
    (dict(ssl_baseline_source=dict(type='Reinhard'), ssl_untranslated_source=True), r'second copy .*: set one'),
    (dict(ssl_second_source_share=1), r'ssl_second_source_share needs ssl_baseline_source or ssl_untranslated'),
    (dict(ssl_baseline_source=dict(type='Reinhard'), ssl_second_source_share=0.33), r'share must be a fraction'),
    (dict(second_source_all_stages=True), r'second_source_all_stages needs ssl_baseline_source or ssl_untranslated'),
    (dict(ssl_baseline_source=dict(type='Reinhard'), second_source_all_stages=1), r'must be True or False, got 1'),
])
def test_bad_ssl_baseline_source_fails_before_any_stage(options, message, toy, tmp_path):
    with pytest.raises(ValueError, match=message):
        build_loop(write_config(tmp_path / 'cfg.py', toy), tmp_path / 'work',
                   {f'train_cfg.{k}': v for k, v in options.items()})
    assert not osp.exists(osp.join(tmp_path, 'work', 'm0'))


def test_mean_teacher_runs_through_the_plan(toy, tmp_path):
    """model.mean_teacher end to end (FDA in F's place, K = 1, N = 1, 2 iterations per M stage): the teacher is
    saved with each stage's model and continued by the stage that loads it (the toy starts every adaptation run
    from M(0): 2 updates in M(0), 2 more in M_1(1)), it labels only the SSL stage's steps, and M alone is exported."""
    import glob

    import torch
    config = write_config(tmp_path / 'cfg.py', toy, extra='model = dict(mean_teacher=dict(momentum=0.5))')
    state = train(config, tmp_path / 'work')
    assert list(state['stages']) == STAGES_K1_N1 and state['final_model']['stage'] == 'k1/m1'

    def steps(stage):
        ckpt = torch.load(osp.join(tmp_path, 'work', stage, 'final_model.pth'), map_location='cpu')
        return int(ckpt['state_dict']['teacher.steps'])

    def logged(stage):
        (scalars, ) = glob.glob(osp.join(tmp_path, 'work', stage, '*', 'vis_data', 'scalars.json'))
        return {key for line in open(scalars) for key in json.loads(line)}

    assert (steps('m0'), steps('k1/m0'), steps('k1/m1')) == (2, 4, 4)
    assert 'tgt.teacher_confident' in logged('k1/m1') and 'tgt.teacher_confident' not in logged('k1/m0')
    segmentor = torch.load(osp.join(tmp_path, 'work', 'k1/m1', 'segmentor.pth'), map_location='cpu')
    assert not any('teacher' in k for k in segmentor['state_dict'])


RESIZE = dict(type='Resize', scale=(256, 144), keep_ratio=False, backend='pillow', interpolation='bicubic')


@pytest.mark.parametrize('pipeline, size', [
    ([dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), RESIZE, dict(type='PackSegInputs')], (256, 144)),
    ([dict(type='LoadImageFromFile'), dict(RESIZE, type='mmseg.Resize')], (256, 144)),
    ([dict(type='LoadImageFromFile'), dict(RESIZE, keep_ratio=True)], None),
    ([dict(type='LoadImageFromFile'), dict(RESIZE, interpolation='bilinear')], None),
    ([dict(type='LoadImageFromFile'), dict(RESIZE, backend='cv2')], None),
    ([dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5), RESIZE], None),  # not the first step
    ([dict(type='LoadImageFromFile'), dict(type='PackSegInputs')], None),
])
def test_ssl_baseline_size_is_m_source_scale_only_behind_a_plain_resize(pipeline, size):
    from bdl_mm.engine.prealign import ssl_baseline_size
    assert ssl_baseline_size(dict(pipeline=pipeline)) == size


def test_baseline_copy_at_m_scale_gives_m_the_same_pixels(tmp_path):
    """Row 21's B(S) is written at M's source scale (``resize_output``): through M's source pipeline it loads to the
    same pixels, bit for bit, as the copy at the source's size, in fewer bytes (random sizes, a fitted Reinhard)."""
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope

    from bdl_mm.apis import translate_dataset
    from bdl_mm.models.translators.translation_baseline import build_baseline, read_image
    rng = np.random.default_rng(0)
    (tmp_path / 'src').mkdir()
    (tmp_path / 'tgt').mkdir()
    for i, (w, h) in enumerate([(321, 143), (320, 144), (300, 170), (257, 144)]):
        smooth = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                            interpolation=cv2.INTER_CUBIC)  # an image with structure, not bare noise
        cv2.imwrite(str(tmp_path / 'src' / f'{i}.png'), smooth)
        cv2.imwrite(str(tmp_path / 'tgt' / f'{i}.png'), (smooth * 0.5 + 60).astype(np.uint8))
    baseline = build_baseline(dict(type='Reinhard'))
    baseline.fit(sorted(str(p) for p in (tmp_path / 'tgt').iterdir()))
    full, small = tmp_path / 'full', tmp_path / 'small'
    assert translate_dataset(baseline, str(tmp_path / 'src'), str(full), num_workers=0, progress=False)['written'] == 4
    assert translate_dataset(baseline, str(tmp_path / 'src'), str(small), num_workers=0, progress=False,
                             resize_output=(256, 144))['written'] == 4
    init_default_scope('mmseg')
    load = Compose([dict(type='LoadImageFromFile'), RESIZE])
    for i in range(4):
        a, b = (load(dict(img_path=str(d / f'{i}.png')))['img'] for d in (full, small))
        assert a.shape == b.shape == (144, 256, 3)
        assert np.array_equal(a, b), i
        assert read_image(str(small / f'{i}.png')).shape == (144, 256, 3)
    assert sum(p.stat().st_size for p in small.iterdir()) < sum(p.stat().st_size for p in full.iterdir())
