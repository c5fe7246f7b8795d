# Copyright (c) bdl_mm contributors.
"""Every benchmark under tools/ runs at tiny sizes and prints its figures (issue 14, item 3), so none of them rots.

The speed targets live in the benchmarks themselves (their PASS/FAIL lines at full size), never here: these tests
check that each one runs, times what it says and reports the figures, not how fast the machine is.
"""
import glob
import json
import os.path as osp
import re

import pytest
from toy_helpers import ROOT, load_tool

TOY = osp.join(ROOT, 'configs', 'bdl_toy.py')
# benchmarks smoke-tested in other files: (test file, test function)
ELSEWHERE = {
    'tools/benchmark_pseudo_label.py': ('tests/test_tools/test_benchmark_pseudo_label.py',
                                        'test_benchmark_judges_the_growth'),
    'tools/analysis_tools/benchmark.py': ('tests/test_tools/test_analysis_tools.py', 'test_benchmark_of_m'),
}
HERE = {'tools/benchmark.py': 'test_m_step_benchmark', 'tools/benchmark_translation.py': 'test_f_step_benchmark',
        'tools/benchmark_hardware.py': 'test_hardware_table_probe'}

TINY_M = """model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[104.00698793, 116.66876762, 122.67891434],
                           std=[1., 1., 1.], bgr_to_rgb=False),
    backbone=dict(type='ResNet', depth=18, num_stages=1, strides=(1, ), dilations=(1, ), out_indices=(0, ),
                  base_channels=4, stem_channels=4),
    decode_head=dict(type='FCNHead', in_channels=4, channels=4, num_convs=1, concat_input=False, num_classes=5,
                     loss_decode=dict(type='CrossEntropyLoss')),
    train_cfg=dict(), test_cfg=dict(mode='whole'))
"""


def test_every_benchmark_is_smoke_tested():
    found = {osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'tools', '**', 'benchmark*.py'), recursive=True)}
    assert found == set(HERE) | set(ELSEWHERE), 'a benchmark without a smoke test (add it here)'
    for script, name in HERE.items():
        assert callable(globals()[name]), script
    for script, (test_file, name) in ELSEWHERE.items():
        text = open(osp.join(ROOT, test_file)).read()
        assert f'def {name}(' in text and osp.basename(script) in text, (script, test_file)


def test_f_step_benchmark(tmp_path, capsys):
    seg_cfg = tmp_path / 'tiny_m.py'
    seg_cfg.write_text(TINY_M)
    bench = load_tool('benchmark_translation.py')
    result = bench.main(['--size', '32', '--base-channels', '4', '--num-blocks', '1', '--seg-config', str(seg_cfg),
                         '--repeats', '2', '--warmup', '1', '--threads', '1', '--reference', ROOT, '--profile',
                         '--json', str(tmp_path / 'f.json')])
    out = capsys.readouterr().out
    assert 'crop 32x32' in out and 'median of 2 paired repeats after 1 warm-up' in out
    rows = result['variants']
    assert set(rows) == {'mmagic', 'plain', 'perceptual', 'perceptual_unfolded', 'reference'}
    for name, row in rows.items():
        assert len(row['times_s']) == len(row['cpu_times_s']) == 2 and all(t > 0 for t in row['times_s'])
        assert re.search(rf'^{name}\s+{row["median_s"]:.3f}\s.*\s{row["median_cpu_s"]:.3f}\s', out, re.M), name
    assert rows['plain']['paired_ratio_to_base'] == 1.0
    verdicts = result['verdicts']
    assert f'perceptual / plain: paired {verdicts["overhead"]["paired"]:.3f} (target <= 1.40: ' in out
    assert f'perceptual / reference: paired {verdicts["vs_reference"]["paired"]:.3f}' in out
    assert 'perceptual / perceptual_unfolded: paired' in out
    # the same weights and batch: the first step's losses agree (this checkout is its own reference here)
    first = result['first_step_losses']
    assert first['reference'] == first['perceptual']
    assert 0 <= verdicts['first_step_loss_max_rel_diff'] < 1e-5
    assert {k for k in first['perceptual'] if k.startswith('loss_per')} == {
        'loss_per_source', 'loss_per_target', 'loss_per_recon_source', 'loss_per_recon_target'}
    assert not any(k.startswith('loss_per') for k in first['plain'])
    saved = json.loads((tmp_path / 'f.json').read_text())
    assert saved['variants']['perceptual']['times_s'] == rows['perceptual']['times_s']
    # --profile: the perceptual step by phase, every op in one phase, M's three phases and their share
    prof = result['profile']
    assert saved['profile']['phases'] == prof['phases']
    phases = prof['phases']
    assert abs(sum(phases.values()) - prof['step_s']) < 1e-9 and all(v >= 0 for v in phases.values())
    assert {'G forward', 'G backward', 'D forward', 'D backward', *bench.M_PHASES} <= set(phases), sorted(phases)
    assert prof['m_s'] == pytest.approx(sum(phases[p] for p in bench.M_PHASES)) and 0 < prof['m_share'] < 1
    assert 'profile of `perceptual` (torch.profiler, self CPU per step, 1 step(s) after the timed ones): ' in out
    for phase, sec in phases.items():
        assert re.search(rf'^  {re.escape(phase)}\s+{sec:.3f} s ', out, re.M), phase
    assert f"{prof['m_share'] * 100:.1f} % of the step; perceptual / plain cannot fall below " in out
    with pytest.raises(SystemExit):
        bench.main(['--variants', 'plain,fast'])
    with pytest.raises(SystemExit):
        bench.main(['--variants', 'plain', '--profile'])


def test_m_step_benchmark(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(osp.join(ROOT, 'tools'))  # tools/_bootstrap.py, as the script runs
    bench = load_tool('benchmark.py')
    bench.main(['--config', TOY, '--source-size', '64', '32', '--target-size', '48', '32', '--pseudo', '--repeats',
                '2', '--warmup', '1', '--json', str(tmp_path / 'm.json')])
    out = capsys.readouterr().out
    result = json.loads((tmp_path / 'm.json').read_text())
    assert 'source 64x32, target 48x32 + pseudo label' in out and 'median of 2 after 1 warm-up' in out
    for variant in ('bdl', 'bare'):
        assert len(result['times'][variant]) == 2
        mem = result['memory'][variant]  # one step in a fresh process, peak minus the resident size before it
        assert 0 < mem['step'] < mem['peak']
        assert re.search(rf'^{variant}\s+{result["median"][variant]:.3f}\s.*\s{mem["peak"] / 2**20:.1f}\s+'
                         rf'{mem["step"] / 2**20:.1f}$', out, re.M), variant
    assert f'median of paired steps {result["paired_ratio"]:.3f} (target <= 1.10: ' in out
    assert 'step-memory ratio = ' in out


def test_hardware_table_probe():
    """tools/benchmark_hardware.py on the toy config: the stage kinds' figures, and a checkpoint as big as the
    preflight's disk estimate computes it (bdl_mm.engine.disk_estimate)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from bdl_mm.engine.disk_estimate import checkpoint_bytes
    hw = load_tool('benchmark_hardware.py')
    src = hw.probe(TOY, 'source_only', 'cpu')
    ssl = hw.probe(TOY, 'ssl_adaptation', 'cpu')
    for rec in (src, ssl):
        assert rec['seconds'] > 0 and rec['alloc_peak_gib'] > 0 and rec['process_peak_gib'] > rec['alloc_peak_gib']
    # SSL adaptation: M forward and backward on the source (256x144) and on the target (256x128: 128/144 of the
    # source's work), plus D_M's three passes
    assert 1 + 128 / 144 < ssl['flops'] / src['flops'] < 3
    configs, plan = hw.stage_configs(TOY)
    cfg = configs.m_stage_cfg(hw.first_stage(plan, 'ssl_adaptation'))
    init_default_scope('mmseg')
    computed = checkpoint_bytes(MODELS.build(cfg.model), cfg.optim_wrapper) / 2**20
    assert abs(ssl['checkpoint_mib'] - computed) < 0.02 * computed  # torch.save adds key names and pickling
    assert hw.probe(TOY.replace('bdl_toy', 'bdl_toy_fda'), 'translation', 'cpu')['skipped']


def test_hardware_estimate_by_hand(capsys):
    """--estimate: FLOPs per unit x the plan's units at the release's schedule, over the throughput; a config with a
    stage kind not measured gets no hours (it would count as free)."""
    hw = load_tool('benchmark_hardware.py')
    units = hw.schedule(TOY)
    # the toy plan at the released data sets' sizes: F's epochs x max(#source, #target) images, S' per GTA5 image
    assert units['translate'] == hw.DATASET_IMAGES['GTA5Dataset'] * sum(
        s.kind == 'translate' for s in hw.stage_configs(TOY)[1])
    records = [dict(config=TOY, kind=k, flops=1e12 * (i + 1)) for i, k in enumerate(units)]
    records[0]['batch'] = 2  # per unit: FLOPs of a step / its batch
    est = hw.estimate(records, 10.0)[TOY]
    total = sum(1e12 * (i + 1) / (2 if i == 0 else 1) * n for i, n in enumerate(units.values()))
    assert est['pflop'] == round(total / 1e15, 1) and est['missing'] == []
    assert est['gpu_hours'] == {g: round(total / 10e12 / 3600 / g, 1) for g in (1, 4, 8)}
    hw.print_estimate(records[1:], 10.0)
    out = capsys.readouterr().out
    assert out.startswith(f'{TOY}: no estimate, stage kinds not measured: {list(units)[0]}') and ' h on ' not in out


def test_hardware_estimate_measured_hours(capsys):
    """Records measured on CUDA also give the whole plan's hours at their own step times (seconds per unit x the
    plan's units); CPU records give none (their seconds are CPU time of a first step, not a GPU's pace)."""
    hw = load_tool('benchmark_hardware.py')
    units = hw.schedule(TOY)
    records = [dict(config=TOY, kind=k, flops=1e12, seconds=0.5 * (i + 1), device='cuda')
               for i, k in enumerate(units)]
    records[0]['batch'] = 4  # F-style: a step of 4 images is 4 units
    est = hw.estimate(records, 10.0)[TOY]
    by_kind = {k: 0.5 * (i + 1) / (4 if i == 0 else 1) * n / 3600 for i, (k, n) in enumerate(units.items())}
    assert est['measured_hours_by_kind'] == {k: round(h, 2) for k, h in by_kind.items()}
    assert est['measured_gpu_hours'] == round(sum(by_kind.values()), 1) > 0
    hw.print_estimate(records, 10.0)
    assert f'{TOY}: at the measured CUDA step times, {est["measured_gpu_hours"]} h on that one GPU' in \
        capsys.readouterr().out
    cpu = [dict(r, device='cpu') for r in records]
    assert 'measured_gpu_hours' not in hw.estimate(cpu, 10.0)[TOY]
    assert 'measured_gpu_hours' not in hw.estimate(records[1:], 10.0)[TOY]  # a kind missing: no hours
