"""tools/train.py CONFIG --dry-run: builds the Algorithm-1 loop, prints its plan (each stage, what it reads and writes,
its planned work), runs the preflight scan (--check-data) and trains nothing; on the flagship config without its
data, --check-data none still prints the plan."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from toy_helpers import ROOT, write_bdl_config

TRAIN = osp.join(ROOT, 'tools', 'train.py')


@pytest.fixture(scope='module')
def toy(toy_root):
    return toy_root  # the session's toy pair (tests/conftest.py)


def dry_run(config, work, *args):
    proc = subprocess.run([sys.executable, TRAIN, config, '--work-dir', str(work), '--dry-run', *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def written(work):
    """Everything under the work dir but the logs (mmengine's timestamped log folder and config dump)."""
    out = []
    for root, dirs, files in os.walk(work):
        rel = osp.relpath(root, work)
        if rel.split(os.sep)[0][:2] == '20' or (rel == '.' and files and all(f.endswith('.py') for f in files)):
            continue  # <timestamp>/ (log, vis_data) and <config>.py
        out += [osp.join(rel, f) for f in files]
    return out


def test_toy_dry_run_prints_the_plan_and_scans_the_data(toy, tmp_path):
    config = write_bdl_config(tmp_path / 'cfg.py', toy)
    work = tmp_path / 'work'
    out = dry_run(config, work)
    assert 'Algorithm 1: K=1 rounds of F then M, N=1 SSL rounds each' in out
    for n, (name, what) in enumerate([('m0', 'M(0) on S'), ('k1/translation', 'F(1), perceptual loss through M(0)'),
                                      ('k1/translate', "S'(1) = F(1)(S)"), ('k1/m0', "M_0(1) on S'(1) + T"),
                                      ('k1/ssl1', 'pseudo labels of T from M_0(1)'),
                                      ('k1/m1', "M_1(1) on S'(1) + T + pseudo labels")], 1):
        line = next(line for line in out.splitlines() if f'{n}. {name} ' in line)
        assert what in line, line
    # planned work: M 2 iterations, F 1 epoch x ceil(6 / batch 4), 6 source images, 4 target images
    assert out.count('(2 iters)') == 4 and '(6 images)' in out and '(4 images)' in out
    assert "reads  starts from: M(0) [m0]; S': S'(1) [k1/translate]; pseudo labels: T labelled by M_0(1)" in out
    assert 'writes M_1(1) [k1/m1/final_model.pth, segmentor.pth]' in out
    assert 'preflight (header): 20 files checked' in out and 'nothing trained' in out
    assert written(work) == []  # no stage, state, fingerprint, initial weights or preflight report


def test_dry_run_stops_at_bad_data_in_one_line(toy, tmp_path):
    config = write_bdl_config(tmp_path / 'cfg.py', toy)
    proc = subprocess.run([sys.executable, TRAIN, config, '--work-dir', str(tmp_path / 'work'), '--dry-run',
                           '--cfg-options', f'train_dataloader.dataset.target.data_root={tmp_path}/nowhere/'],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith('error: preflight (header): target train')
    assert 'Algorithm 1: K=1' in proc.stdout  # the plan was printed first


def test_flagship_dry_run_without_data(tmp_path):
    work = tmp_path / 'work'
    out = dry_run(osp.join(ROOT, 'configs', 'bdl_gta5.py'), work, '--check-data', 'none')
    assert "Algorithm 1: K=2 rounds of F then M, N=2 SSL rounds each" in out and '15 stages' in out
    assert 'final model: M_2(2) [k2/m2]' in out
    assert ' 15. k2/m2 ' in out and 'M(k-1): M_2(1) [k1/m2]' in out
    assert '(80000 iters)' in out and '(120000 iters)' in out  # M stages: max_iters, known without data
    assert '(? images)' in out  # S and T are not there: their image counts are unknown
    assert 'data checks skipped' in out
    assert written(work) == []
