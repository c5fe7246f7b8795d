"""Reference rows of the results table (``train_cfg.references``): the source-only model, a target-supervised oracle
and translation baselines run as reference tracks of the same plan, with the share of the source-to-oracle gap each
closes. A toy plan with an oracle and a Reinhard track runs end to end; the oracle's data set is derived from the
target train split and the val labels; bad settings fail before training in one line."""
import json
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from toy_helpers import ROOT

from bdl_mm.evaluation.results_table import format_results_table, reference_rows
from bdl_mm.structures.plan import Stage

TRAIN = osp.join(ROOT, 'tools', 'train.py')
REFS = ("references=dict(_delete_=True, oracle=dict(), reinhard=dict(translation=dict(type='Reinhard'), N=1), "
        "adv=dict(translation=None, use_ssl=False)),")


@pytest.fixture
def toy(toy_root):
    return toy_root  # the session's toy pair (6 source, 4 target train, 2 target val; tests/conftest.py)


def write_config(path, toy_root, loop_options=REFS):
    """configs/bdl_toy_fda.py (FDA in F's place, K = 1) on the test's toy data, N = 1, 2 iterations per M."""
    src, tgt = osp.join(toy_root, 'gta5/'), osp.join(toy_root, 'cityscapes/')
    path.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'bdl_toy_fda.py')!r}]
train_dataloader = dict(dataset=dict(source=dict(data_root={src!r}), target=dict(data_root={tgt!r})))
val_dataloader = dict(dataset=dict(data_root={tgt!r}))
test_dataloader = val_dataloader
fast = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
train_cfg = dict(N=1, {loop_options}
                 stages=dict(source_only=dict(train_cfg=fast), adaptation=dict(train_cfg=fast),
                             ssl_adaptation=dict(train_cfg=fast)))
''')
    return str(path)


def build_loop(config, work_dir):
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    return Runner.from_cfg(cfg).build_train_loop(cfg.train_cfg)


PLAN = ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1',  # the run itself (FDA, K = 1)
        'ref/oracle',
        'ref/reinhard/k1/translation', 'ref/reinhard/k1/translate', 'ref/reinhard/k1/m0', 'ref/reinhard/k1/ssl1',
        'ref/reinhard/k1/m1',
        'ref/adv/k1/m0']  # no translation, no SSL: output-space adaptation alone


def test_plan_and_oracle_dataset(toy, tmp_path):
    loop = build_loop(write_config(tmp_path / 'cfg.py', toy), tmp_path / 'work')
    assert [s.name for s in loop.plan] == PLAN
    labels = {s.name: s.model_label for s in loop.plan}
    assert labels['ref/oracle'] == 'oracle' and labels['ref/reinhard/k1/m1'] == 'reinhard: M_1(1)'
    assert loop.plan[7].what == "reinhard: Reinhard() fitted on T, in F(1)'s place (no training)"
    assert loop.plan[-1].what == 'adv: M_0(1) on S + T'
    assert loop.plan.run_name == 'FDA'
    # the oracle reads the target train images with their labels (val's label folder, split renamed)
    dataset = loop.configs.oracle_dataset()
    assert dataset.data_prefix == dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train')
    assert [t['type'] for t in dataset.pipeline][:3] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize']
    assert dataset.pipeline[-1]['type'] == 'PackSegInputs'
    cfg = loop.configs.m_stage_cfg(loop.plan[6])
    assert cfg.model.adversarial is False and cfg.train_dataloader.dataset.data_prefix.seg_map_path == 'gtFine/train'
    from mmseg.registry import DATASETS
    built = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(built) == 4 and all(osp.isfile(built.get_data_info(i)['seg_map_path']) for i in range(4))


# the other bad reference settings (no translation, unknown keys, track names, oracle=True, N) are checked on the
# plan alone: test_plan.py::test_bad_settings_fail_in_one_line
@pytest.mark.parametrize('options, message', [
    ("references=dict(_delete_=True, fda=dict(translation=dict(type='FDAish'))),",
     r"^train_cfg\.references\.fda\.translation\.type: unknown translation type 'FDAish'"),
    ("references=dict(_delete_=True, fda=dict(translation=dict(type='FDA'), K=0)),",
     r'^train_cfg\.references\.fda\.K must be an integer >= 1, got 0'),
])
def test_bad_references_fail_before_training(options, message, toy, tmp_path):
    with pytest.raises(ValueError, match=message) as info:
        build_loop(write_config(tmp_path / 'cfg.py', toy, options), tmp_path / 'work')
    assert '\n' not in str(info.value)


def test_reference_rows_and_gap_closed(tmp_path):
    plan = [Stage('m0', 'source_only'), Stage('k1/m0', 'adaptation', 1, 0), Stage('k1/m1', 'ssl_adaptation', 1, 1),
            Stage('ref/oracle', 'oracle'), Stage('ref/fda/k1/m0', 'adaptation', 1, 0, track='fda')]
    state = {'m0': dict(status='done', metrics={'mIoU': 30.0}),
             'k1/m0': dict(status='done', metrics={'mIoU': 42.0}),
             'k1/m1': dict(status='done', metrics={'mIoU': 40.0}),
             'ref/oracle': dict(status='done', metrics={'mIoU': 70.0})}
    rows = reference_rows(plan, state)
    assert [r['name'] for r in rows] == ['source-only', 'BDL', 'fda', 'oracle']
    bdl = rows[1]
    assert (bdl['model'], bdl['mIoU'], bdl['best_model'], bdl['best_mIoU']) == ('M_1(1)', 40.0, 'M_0(1)', 42.0)
    assert bdl['gap_closed'] == pytest.approx((40 - 30) / (70 - 30))  # the final model's share, not the best's
    assert rows[0]['gap_closed'] == 0 and rows[3]['gap_closed'] == 1
    assert rows[2]['mIoU'] is None and rows[2]['gap_closed'] is None  # not run yet
    cfg = Config(dict(val_dataloader=dict(dataset=dict(type='CityscapesDataset'))))
    table = format_results_table(plan, state, cfg, str(tmp_path))
    assert '| BDL | M_1(1) | 40.0 | 25% | M_0(1) 42.0 |' in table and '| oracle | oracle | 70.0 | 100% | - |' in table
    saved = json.load(open(tmp_path / 'results.json'))
    assert [r['name'] for r in saved['references']] == ['source-only', 'BDL', 'fda', 'oracle']
    assert saved['rows'][3]['track'] == 'oracle'


def test_references_run_end_to_end(toy, tmp_path):
    config = write_config(tmp_path / 'cfg.py', toy)
    work = tmp_path / 'work'
    proc = subprocess.run([sys.executable, TRAIN, config, '--work-dir', str(work)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.load(open(work / 'bdl_state.json'))
    assert state['plan'] == PLAN and all(state['stages'][n]['status'] == 'done' for n in PLAN)
    # the Reinhard track fitted its own baseline and trained on its own translated source
    assert json.load(open(work / 'ref/reinhard/k1/translation/translator.json'))['type'] == 'ReinhardColourTransfer'
    assert state['stages']['ref/reinhard/k1/m1']['translated_dir'] == str(work / 'ref/reinhard/k1/translate')
    assert state['stages']['ref/adv/k1/m0']['translated_dir'] is None
    # the final model is the run's own last stage, not a reference's
    assert state['final_model']['stage'] == 'k1/m1'
    saved = json.load(open(work / 'results.json'))
    refs = {r['name']: r for r in saved['references']}
    assert list(refs) == ['source-only', 'FDA', 'reinhard', 'adv', 'oracle']
    src, top = (state['stages'][n]['metrics']['mIoU'] for n in ('m0', 'ref/oracle'))
    assert refs['FDA']['mIoU'] == state['stages']['k1/m1']['metrics']['mIoU']
    if abs(top - src) > 1e-9:
        assert refs['FDA']['gap_closed'] == pytest.approx((refs['FDA']['mIoU'] - src) / (top - src))
    md = open(work / 'results.md').read()
    assert '| reference | model (final) | mIoU | gap closed |' in md and '| reinhard | reinhard: M_1(1) |' in md
    assert "| edges of S kept in S' |" in md
    # per-stage diagnostics, beside each stage and in the table (the toy target train split has labels)
    diag = json.load(open(work / 'k1/translate/diagnostics.json'))
    assert diag['model'] == 'M(0)' and diag['num_images'] == 6
    assert 0 <= diag['miou_on_source'] <= 100 and 0 <= diag['miou_on_translated'] <= 100
    assert diag['colour_distance_translated_to_target'] < diag['colour_distance_source_to_target']  # FDA moves S
    assert 0.7 < diag['edge_consistency'] <= 1.0  # ... and keeps its edges
    ssl = json.load(open(work / 'k1/ssl1/diagnostics.json'))
    assert ssl['kept_ratio'] == state['stages']['k1/ssl1']['kept_ratio'] and 0 <= ssl['precision'] <= 100
    assert state['stages']['ref/reinhard/k1/translate']['diagnostics']['model'] == 'reinhard: M(0)'
    assert "| translation | model | mIoU on S | mIoU on S' |" in md and '| k1/ssl1 |' in md
    assert [r['stage'] for r in saved['diagnostics']] == ['k1/translate', 'k1/ssl1', 'ref/reinhard/k1/translate',
                                                           'ref/reinhard/k1/ssl1']


def test_gap_config_plans_source_only_adversarial_and_oracle(toy, tmp_path):
    """configs/bdl_toy_gap.py (a family's gap for the README): M(0), one M_0(1) without F or SSL, the oracle; no
    translation track is inherited from bdl_toy.py."""
    src, tgt = osp.join(toy, 'gta5/'), osp.join(toy, 'cityscapes/')
    config = tmp_path / 'gap.py'
    config.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'bdl_toy_gap.py')!r}]
train_dataloader = dict(dataset=dict(source=dict(data_root={src!r}), target=dict(data_root={tgt!r})))
val_dataloader = dict(dataset=dict(data_root={tgt!r}))
test_dataloader = val_dataloader
''')
    loop = build_loop(str(config), tmp_path / 'work')
    assert [(s.name, s.kind) for s in loop.plan] == [
        ('m0', 'source_only'), ('k1/m0', 'adaptation'), ('ref/oracle', 'oracle')]
    assert loop.plan[1].what == 'M_0(1) on S + T'
    assert loop.configs.m_stage_cfg(loop.plan[1]).train_cfg.max_iters == 400  # bdl_toy.py's M stages, unchanged
