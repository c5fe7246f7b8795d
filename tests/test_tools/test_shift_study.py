"""tools/shift_study.py: family data written once, each run pointed at its family's data and seed, finished runs
read and not rerun, the table's means, standard deviations and checks computed by hand."""
import json
import os.path as osp

import pytest
from mmengine.config import Config, DictAction
from toy_helpers import ROOT, load_tool

from bdl_mm.engine.stage_configs import StageConfigBuilder
from bdl_mm.structures.plan import build_plan

study = load_tool('shift_study.py')
TINY = ['--num-source', '2', '--num-target-train', '2', '--num-target-val', '1']


def fake_run(run_dir, values, best, stages=None, diagnostics=None):
    """A finished run's outputs: results.json with reference rows (and the run's own stage rows), a final model."""
    run_dir.mkdir(parents=True)
    refs = [dict(name=name, mIoU=value, best_mIoU=best if name == 'BDL' else None) for name, value in values.items()]
    rows = [dict(model=label, track='', metrics=dict(mIoU=value)) for label, value in (stages or {}).items()]
    rows.append(dict(model='M_0(1)', track='fda', metrics=dict(mIoU=1.0)))  # another track: not BDL's stages
    (run_dir / 'results.json').write_text(json.dumps(dict(references=refs, rows=rows, stages_done=30,
                                                          stages_planned=30,
                                                          diagnostics=diagnostics or [
                                                              dict(stage='k1/ssl1', precision=80.0)])))
    (run_dir / 'final_model.pth').write_bytes(b'x')


def test_finished_runs_are_read_and_summarised(tmp_path, capsys):
    work = tmp_path / 'study'
    runs = {('toy', 0): (30, 40, 38, 45, 46, 70), ('toy', 1): (32, 44, 40, 41, 47, 72),
            ('colour', 0): (50, 60, 55, 58, 58.5, 80), ('colour', 1): (52, 58, 57, 60, 62, 82)}
    for (family, seed), (src, rh, fda, bdl, best, oracle) in runs.items():
        fake_run(work / family / f'seed{seed}', {'source-only': src, 'reinhard': rh, 'fda': fda, 'BDL': bdl,
                                                  'oracle': oracle}, best)
    # a finished run is never retrained: the training command would fail on this config
    study.main(['--config', str(tmp_path / 'missing.py'), '--families', 'toy', 'colour', '--seeds', '0', '1',
                '--work-dir', str(work), *TINY])
    out = capsys.readouterr().out
    assert out.count('finished earlier, read') == 4
    saved = json.load(open(work / 'results.json'))
    toy = saved['families']['toy']
    assert toy['columns']['BDL']['mean'] == 43 and toy['columns']['BDL']['sd'] == pytest.approx(2 ** 0.5 * 2)
    assert toy['gap'] == 71 - 31
    # toy: BDL 43 > source 31, 43 >= colour 42, best 46.5 - 43 > 1; colour: 59 > 51, 59 < 59 is False? (59 >= 59)
    assert toy['checks'] == dict(beats_source_only=True, matches_colour_transfer=True, final_within_1_of_best=False)
    assert saved['families']['colour']['checks'] == dict(beats_source_only=True, matches_colour_transfer=True,
                                                         final_within_1_of_best=False)
    md = (work / 'results.md').read_text()
    assert '| toy | 31.0 ± 1.4 | 42.0 ± 2.8 | 39.0 ± 1.4 | 43.0 ± 2.8 | 46.5 ± 0.7 | 71.0 ± 1.4 | 40.0 | 0,1 |' in md
    assert '| toy | 31.0 ± 1.4 |' in md and md.split('| toy | 31.0 ± 1.4 |')[1].splitlines()[0].endswith(
        '| yes | yes | NO |')
    # over the families: BDL (43 + 59) / 2 = 51, FDA (39 + 56) / 2 = 47.5
    assert saved['overall'] == dict(families=2, bdl_final=51, fda_final=47.5, above_fda=True)
    assert 'BDL final 51.0, FDA track final 47.5: BDL above FDA: yes' in md
    # paired, seed by seed: toy BDL - colour = 45 - 40, 41 - 44 -> +1 ± sd(5, -3); best - final = 1, 6
    paired = toy['paired']
    assert paired['BDL final - colour transfer']['mean'] == 1 and paired['BDL final - colour transfer']['sd'] == (
        pytest.approx(32 ** 0.5))
    assert paired['BDL best - final']['mean'] == 3.5
    assert '| 0,1 | +1.0 ± 5.7 | +3.5 ± 3.5 | yes | yes | NO |' in md
    assert (work / 'results.png').read_bytes()[:4] == b'\x89PNG'
    # the family data was written once, in the real formats, atomically
    for family in ('toy', 'colour'):
        assert osp.isfile(work / 'data' / family / '.complete') and not osp.exists(work / 'data' / f'{family}.tmp')
        assert osp.isfile(work / 'data' / family / 'gta5' / 'labels' / '00002_labelTrainIds.png')


def test_each_run_reads_its_family_data_and_seed(tmp_path, capsys):
    work = tmp_path / 'study'
    study.main(['--families', 'sensor', '--seeds', '3', '--work-dir', str(work), '--dry-run', *TINY])
    command = capsys.readouterr().out.strip().split(' ')
    assert command[1].endswith('tools/train.py') and command[2].endswith('configs/bdl_toy.py')
    assert command[3:6] == ['--work-dir', str(work / 'sensor' / 'seed3'), '--resume']
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)  # as tools/train.py parses them
    options = parser.parse_args(command[command.index('--cfg-options'):]).cfg_options
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'bdl_toy.py'))
    cfg.merge_from_dict(options)
    cfg.work_dir = str(tmp_path / 'built')
    assert cfg.randomness.seed == 3
    configs = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), cfg.work_dir)  # each stage's config, as the loop's
    data = str(work / 'data' / 'sensor')
    # M's data, F's folders and the oracle's labels all come from the family's data
    assert configs.m_image_folders()['source']['data_root'] == data + '/gta5/'
    assert configs.m_image_folders()['target']['data_root'] == data + '/cityscapes/'
    assert cfg.val_dataloader.dataset.data_root == data + '/cityscapes/'
    assert configs.oracle_dataset().data_root == data + '/cityscapes/'
    assert not osp.exists(work / 'sensor')  # a dry run trains nothing
    assert '--force-resume' not in command
    # --force-resume (runs branched from another study) reaches train.py
    study.main(['--families', 'sensor', '--seeds', '3', '--work-dir', str(work), '--dry-run', '--force-resume', *TINY])
    command = capsys.readouterr().out.strip().split(' ')
    assert command[3:7] == ['--work-dir', str(work / 'sensor' / 'seed3'), '--resume', '--force-resume']


def test_unknown_family_is_refused(capsys):
    with pytest.raises(SystemExit):
        study.parse_args(['--families', 'rain'])
    assert "unknown family 'rain'" in capsys.readouterr().err


FAKE_RUN = r'''
import json, os, sys, time
run_dir, seed = sys.argv[1], int(sys.argv[2])
os.makedirs(run_dir, exist_ok=True)
start = time.time()
time.sleep(1.5)
if run_dir.endswith('FAILME'):
    sys.exit(3)
refs = [dict(name='source-only', mIoU=30 + seed), dict(name='BDL', mIoU=40 + seed, best_mIoU=41 + seed)]
json.dump(dict(references=refs, stages_done=1, stages_planned=1), open(os.path.join(run_dir, 'results.json'), 'w'))
open(os.path.join(run_dir, 'final_model.pth'), 'wb').write(b'x')
json.dump(dict(threads=os.environ.get('OMP_NUM_THREADS'), start=start, end=time.time()),
          open(os.path.join(run_dir, 'run.json'), 'w'))
'''


def test_jobs_run_side_by_side_seed_by_seed_with_their_threads(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setattr(study, 'train_command', lambda args, data_root, run_dir, seed: [
        sys.executable, '-c', FAKE_RUN, run_dir, str(seed)])
    work = tmp_path / 'study'
    study.main(['--families', 'toy', 'colour', '--seeds', '0', '1', '--work-dir', str(work), '--jobs', '2',
                '--threads', '1', *TINY])
    out = capsys.readouterr().out
    # every family's seed 0 before any seed 1
    starts = [line.split(': ', 1)[1].split(' ->')[0] for line in out.splitlines() if ' -> ' in line]
    assert starts == ['toy, seed 0', 'colour, seed 0', 'toy, seed 1', 'colour, seed 1']
    runs = {(f, s): json.load(open(work / f / f'seed{s}' / 'run.json')) for f in ('toy', 'colour') for s in (0, 1)}
    assert {r['threads'] for r in runs.values()} == {'1'}
    a, b = runs['toy', 0], runs['colour', 0]
    assert a['start'] < b['end'] and b['start'] < a['end']  # side by side
    saved = json.load(open(work / 'results.json'))
    assert saved['threads'] == 1
    assert saved['families']['colour']['columns']['BDL']['mean'] == 40.5
    assert '(1 CPU threads per run)' in (work / 'results.md').read_text()


def test_a_failed_run_stops_the_study_naming_it(tmp_path, monkeypatch):
    import sys
    monkeypatch.setattr(study, 'train_command', lambda args, data_root, run_dir, seed: [
        sys.executable, '-c', FAKE_RUN, run_dir + ('FAILME' if 'colour' in run_dir else ''), str(seed)])
    with pytest.raises(SystemExit, match=r'run colour/seed0 failed \(exit 3\)'):
        study.main(['--families', 'toy', 'colour', '--seeds', '0', '--work-dir', str(tmp_path / 'study'),
                    '--jobs', '2', *TINY])


def test_report_writes_the_finished_runs_and_trains_nothing(tmp_path, capsys):
    work = tmp_path / 'study'
    fake_run(work / 'toy' / 'seed0', {'source-only': 30, 'reinhard': 40, 'BDL': 42, 'oracle': 60}, 44)
    (work / 'toy' / 'seed1').mkdir(parents=True)  # a run still going: no results.json yet
    study.main(['--config', str(tmp_path / 'missing.py'), '--families', 'toy', '--seeds', '0', '1',
                '--work-dir', str(work), '--report', '--threads', '1', *TINY])
    assert 'toy, seed 1: not finished, left out' in capsys.readouterr().out
    saved = json.load(open(work / 'results.json'))
    row = saved['families']['toy']
    assert row['seeds'] == [0] and row['columns']['BDL']['n'] == 1 and row['paired']['BDL best - final']['mean'] == 2
    md = (work / 'results.md').read_text()
    assert '42.0 ± 0.0 (n=1)' in md and '(1 CPU threads per run)' in md
    assert not (work / 'toy' / 'seed1' / 'study.log').exists()  # nothing was started


def test_a_finished_run_of_another_config_is_refused(tmp_path, capsys):
    """A finished run is read only if its recorded fingerprint (bdl_config.json) is this study's config with the run's
    seed and data: configs/bdl_toy.py's run is read by a report of bdl_toy.py, refused by one of bdl_toy_gap.py."""
    from bdl_mm.engine.fingerprint import outer_fingerprint, record_fingerprint
    work = tmp_path / 'study'
    run_dir = work / 'toy' / 'seed0'
    fake_run(run_dir, {'source-only': 30, 'reinhard': 40, 'BDL': 42, 'oracle': 60}, 44)
    toy_cfg = osp.join(ROOT, 'configs', 'bdl_toy.py')
    src, tgt = str(work / 'data' / 'toy' / 'gta5') + '/', str(work / 'data' / 'toy' / 'cityscapes') + '/'
    cfg = Config.fromfile(toy_cfg)
    cfg.merge_from_dict({'randomness.seed': 0, 'train_dataloader.dataset.source.data_root': src,
                         'train_dataloader.dataset.target.data_root': tgt, 'val_dataloader.dataset.data_root': tgt,
                         'test_dataloader.dataset.data_root': tgt})
    record_fingerprint(str(run_dir), {**outer_fingerprint(cfg), 'translation.model.type': '"PerceptualCycleGAN"'})
    report = ['--families', 'toy', '--seeds', '0', '--work-dir', str(work), '--report', '--threads', '1', *TINY]
    study.main(['--config', toy_cfg, *report])
    assert json.load(open(work / 'results.json'))['families']['toy']['columns']['BDL']['mean'] == 42
    with pytest.raises(SystemExit, match=r'seed0 holds a finished run of another config .* train_cfg\.K \(2 -> 1\)'):
        study.main(['--config', osp.join(ROOT, 'configs', 'bdl_toy_gap.py'), *report])
    with pytest.raises(SystemExit, match=r'randomness\.seed \(0 -> 1\)'):  # the same run read as seed 1
        (run_dir.parent / 'seed1').symlink_to(run_dir)
        study.main(['--config', toy_cfg, *report[:3], '1', *report[4:]])
    # another study's report over this run: its data folder a link to this study's data, read; a copy, refused
    (work / 'data' / 'toy').mkdir(parents=True)
    other = tmp_path / 'other'
    (other / 'toy').mkdir(parents=True)
    (other / 'toy' / 'seed0').symlink_to(run_dir)
    (other / 'data').mkdir()
    (other / 'data' / 'toy').symlink_to(work / 'data' / 'toy')
    study.main(['--config', toy_cfg, *report[:3], '0', '--work-dir', str(other), *report[6:]])
    assert json.load(open(other / 'results.json'))['families']['toy']['columns']['BDL']['mean'] == 42
    # a run recorded before a switch existed (not in its record) is read with the switch at None, its off value
    study.main(['--config', toy_cfg, *report, '--cfg-options', 'train_cfg.ssl_baseline_source=None'])
    with pytest.raises(SystemExit, match=r'e\.g\. train_cfg\.ssl_baseline_source\.type \(- -> "Reinhard"\)'):
        study.main(['--config', toy_cfg, *report, '--cfg-options', 'train_cfg.ssl_baseline_source.type=Reinhard'])
    (other / 'data' / 'toy').unlink()
    (other / 'data' / 'toy').mkdir()
    with pytest.raises(SystemExit, match=r'3 key\(s\), e\.g\. train_dataloader\.dataset\.source\.data_root'):
        study.main(['--config', toy_cfg, *report[:3], '0', '--work-dir', str(other), *report[6:]])


def test_stage_table_and_ssl_round_changes_by_hand(tmp_path):
    """BDL's own stages per family, each stage's paired change from the one before, and the SSL check (no SSL
    round may lower the family mean by more than 0.5): by hand on two seeds."""
    work = tmp_path / 'study'
    refs = {'source-only': 30, 'reinhard': 40, 'fda': 41, 'BDL': 44, 'oracle': 60}
    labels = ['M(0)', 'M_0(1)', 'M_1(1)', 'M_0(2)', 'M_1(2)']
    for seed, values in {0: (30, 45, 44, 46, 45.6), 1: (32, 47, 46.8, 46, 45.8)}.items():
        fake_run(work / 'toy' / f'seed{seed}', refs, 46, dict(zip(labels, values)))
    study.main(['--config', str(tmp_path / 'missing.py'), '--families', 'toy', '--seeds', '0', '1',
                '--work-dir', str(work), '--report', '--threads', '1', *TINY])
    row = json.load(open(work / 'results.json'))['families']['toy']
    assert list(row['stages']) == labels and row['stages']['M_0(1)']['mean'] == 46
    changes = row['changes']
    # M_1(1) - M_0(1): -1 and -0.2 -> -0.6 (an SSL round); M_0(2) - M_1(1): +2, -0.8 -> +0.6 (a new round)
    assert changes['M_1(1)']['kind'] == 'ssl' and changes['M_1(1)']['mean'] == pytest.approx(-0.6)
    assert changes['M_0(2)']['kind'] == 'round' and changes['M_0(2)']['mean'] == pytest.approx(0.6)
    assert changes['M_1(2)']['mean'] == pytest.approx(-0.3) and 'M(0)' not in changes
    assert row['checks']['ssl_rounds_hold'] is False  # -0.6 < -0.5
    md = (work / 'results.md').read_text()
    assert '| toy | 31.0 ± 1.4 | 46.0 ± 1.4 (+15.0) | 45.4 ± 2.0 (-0.6) |' in md
    assert md.rstrip().endswith('| -0.6 (M_1(1)) | NO |')
    assert (work / 'results.png').read_bytes()[:4] == b'\x89PNG'


def test_flag_table_pools_rounds_by_hand(tmp_path):
    """The flags' precision against the others', over every seed and SSL round of a family: means by hand."""
    work = tmp_path / 'study'
    refs = {'source-only': 30, 'BDL': 44, 'oracle': 60}
    ssl = dict(kind='pseudo_label', precision=90.0)
    fake_run(work / 'toy' / 'seed0', refs, 44, diagnostics=[
        dict(ssl, stage='k1/ssl1', precision_flagged=20.0, precision_unflagged=95.0),
        dict(ssl, stage='k1/ssl2', precision=94.0, precision_flagged=None, precision_unflagged=94.0),  # no flags
        dict(stage='k1/translate', kind='translate')])
    fake_run(work / 'toy' / 'seed1', refs, 44, diagnostics=[
        dict(ssl, stage='k1/ssl1', precision=92.0, precision_flagged=97.0, precision_unflagged=91.0)])
    study.main(['--config', str(tmp_path / 'missing.py'), '--families', 'toy', '--seeds', '0', '1',
                '--work-dir', str(work), '--report', '--threads', '1', *TINY])
    flags = json.load(open(work / 'results.json'))['flags']['toy']
    assert flags == dict(rounds=3, rounds_with_flags=2, flagged_below_others=1, precision_flagged=58.5,
                         precision_unflagged=93.0, precision_all=pytest.approx(92.0))
    assert '| toy | 3 | 2 | 1 of 2 | 58.5% | 93.0% | 92.0% |' in (work / 'results.md').read_text()


def test_family_data_made_by_two_studies_at_once_lands_once(tmp_path, monkeypatch):
    """Two studies sharing a work dir make the same family at once: each writes into its own folder, the first to
    finish puts it in place, the second keeps that one and leaves no temporary folder behind."""
    calls = []

    def fake_tool(name, out, *options):
        import os
        os.makedirs(out, exist_ok=True)
        with open(osp.join(out, name.replace('/', '_')), 'w') as f:
            f.write(str(len(calls)))
        calls.append(out)
        if len(calls) == 1:  # the other study starts and finishes while this one writes its first file
            assert study.make_family_data('fog', str(tmp_path), args) == str(tmp_path / 'fog')

    monkeypatch.setattr(study, '_run_tool', fake_tool)
    args = type('Args', (), dict(data_seed=0, num_source=2, num_target_train=2, num_target_val=1))()
    assert study.make_family_data('fog', str(tmp_path), args) == str(tmp_path / 'fog')
    assert len(calls) == 6 and calls[0] != calls[1]  # two folders of their own
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fog']  # no temporary folder left
    # the inner study's folder is the one in place: its make_toy_data file was its first call (index 1)
    assert (tmp_path / 'fog' / 'make_toy_data.py').read_text() == '1' and (tmp_path / 'fog' / '.complete').is_file()
    assert study.make_family_data('fog', str(tmp_path), None) == str(tmp_path / 'fog') and len(calls) == 6
