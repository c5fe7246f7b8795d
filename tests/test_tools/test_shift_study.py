"""tools/shift_study.py: family data written once, each run pointed at its family's data and seed, finished runs
read and not rerun, the table's means, standard deviations and checks computed by hand."""
import json
import os.path as osp

import pytest
from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from toy_helpers import ROOT, load_tool

study = load_tool('shift_study.py')
TINY = ['--num-source', '2', '--num-target-train', '2', '--num-target-val', '1']


def fake_run(run_dir, values, best):
    """A finished run's outputs: results.json with reference rows, a final model."""
    run_dir.mkdir(parents=True)
    refs = [dict(name=name, mIoU=value, best_mIoU=best if name == 'BDL' else None) for name, value in values.items()]
    (run_dir / 'results.json').write_text(json.dumps(dict(references=refs, stages_done=30, stages_planned=30,
                                                          diagnostics=[dict(stage='k1/ssl1', precision=80.0)])))
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
    assert md.splitlines()[-1].endswith('| yes | yes | NO |')
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
    loop = Runner.from_cfg(cfg).build_train_loop(cfg.train_cfg)
    data = str(work / 'data' / 'sensor')
    # M's data, F's folders and the oracle's labels all come from the family's data
    assert loop._m_image_folders()['source']['data_root'] == data + '/gta5/'
    assert loop._m_image_folders()['target']['data_root'] == data + '/cityscapes/'
    assert cfg.val_dataloader.dataset.data_root == data + '/cityscapes/'
    assert loop._oracle_dataset().data_root == data + '/cityscapes/'
    assert not osp.exists(work / 'sensor')  # a dry run trains nothing


def test_unknown_family_is_refused(capsys):
    with pytest.raises(SystemExit):
        study.parse_args(['--families', 'fog'])
    assert "unknown family 'fog'" in capsys.readouterr().err
