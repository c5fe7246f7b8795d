"""The SSL memory benchmark (issue 13, item 6) judges peak minus baseline memory, in a fresh folder on every run."""
import json
import mmap
import os
import subprocess
import sys

import numpy as np
from toy_helpers import ROOT, load_tool

bench = load_tool('benchmark_pseudo_label.py')


def test_growth_is_peak_minus_baseline_not_the_process_size():
    def allocate(mib):
        # pages mapped and touched here (not malloc, which may hand back memory freed, still resident, by an
        # earlier test of this process)
        block = mmap.mmap(-1, mib * 2**20)
        view = np.frombuffer(block, np.uint8)
        view[::4096] = 1
        total = int(view[::4096].sum())
        del view
        block.close()
        return total

    _, mem = bench.measure_peak_growth(allocate, 64)
    assert 60 * 1024 <= mem['growth_kb'] <= 80 * 1024, mem
    assert mem['peak_kb'] - mem['baseline_kb'] == mem['growth_kb']
    assert mem['baseline_kb'] > 0  # the interpreter and numpy: left out of the growth (ru_maxrss includes them)
    # a smaller allocation after a larger one is measured as itself, not as the earlier peak
    _, small = bench.measure_peak_growth(allocate, 16)
    assert 12 * 1024 <= small['growth_kb'] <= 30 * 1024, small


def test_every_run_gets_a_fresh_folder(tmp_path):
    first, second = bench.fresh_run_dir(str(tmp_path)), bench.fresh_run_dir(str(tmp_path))
    assert first != second and os.listdir(first) == [] and os.listdir(second) == []


def test_benchmark_judges_the_growth(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'benchmark_pseudo_label.py'), '--n', '1',
                           '--height', '32', '--width', '64', '--work-dir', str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary['work_dir'].startswith(str(tmp_path / 'run_'))
    small, large = summary['results']
    assert (small['n'], large['n']) == (1, 4)
    for res in (small, large):
        assert 0 < res['growth_kb'] == res['peak_kb'] - res['baseline_kb'] < res['baseline_kb']
    assert summary['ratio'] == large['growth_kb'] / small['growth_kb']
    assert f'growth ratio 4n/n (peak minus baseline) = {summary["ratio"]:.3f}' in proc.stdout
