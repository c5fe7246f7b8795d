"""tools/train.py: a config error of Algorithm 1's loop ends the run in one line, without a traceback."""
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config
from toy_helpers import ROOT, load_tool, write_bdl_config


def test_loop_config_error_is_one_line(tmp_path):
    config = write_bdl_config(tmp_path / 'cfg.py', tmp_path / 'toy')  # the loop fails before any data is read
    work = tmp_path / 'work'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', str(work),
                           '--cfg-options', 'train_cfg.K=0'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert errors == ['error: train_cfg.K must be an integer >= 1, got 0'], proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    assert not osp.exists(work / 'm0') and not osp.exists(work / 'init_weights.pth')  # nothing started


class _Runner:
    """Stands for the runner: building its train loop raises ``error``."""

    def __init__(self, error):
        self.error = error

    @property
    def train_loop(self):
        raise self.error


@pytest.mark.parametrize('error', [
    ValueError('train_cfg.stages.translation.type: unknown translation type'),
    FileNotFoundError('train_cfg.stages.translation.config: no such file: nowhere.py'),
])
def test_build_loop_turns_each_loop_config_error_into_one_line(error, monkeypatch):
    monkeypatch.syspath_prepend(osp.join(ROOT, 'tools'))  # tools/_bootstrap.py, as the script runs
    train = load_tool('train.py')
    bdl = Config(dict(train_cfg=dict(type='BidirectionalLoop')))
    with pytest.raises(SystemExit) as info:
        train.build_loop(_Runner(error), bdl)
    assert info.value.code == f'error: {error}' and info.value.__suppress_context__  # exit status 1, no traceback
    # another error while the loop is built is a bug: its traceback stays
    with pytest.raises(KeyError):
        train.build_loop(_Runner(KeyError('bug')), bdl)
    # configs of other loops are left to mmengine (their loop is not built here)
    train.build_loop(_Runner(error), Config(dict(train_cfg=dict(type='IterBasedTrainLoop'))))
