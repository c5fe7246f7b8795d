"""tools/status.py on work dirs frozen mid-run, after a kill, hung, and after completion: states, progress, ETA."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
from toy_helpers import ROOT

from bdl_mm.engine.run_status import StatusError, format_status, run_status

STATUS = osp.join(ROOT, 'tools', 'status.py')
NOW = 1_800_000_000.0
# K = N = 1: planned units and, for the completed stages, seconds (rates: M(0) 0.25 s/iter, F 0.1 s/iter,
# translation 0.2 s/image)
PLAN = [
    dict(name='m0', kind='source_only', label='M(0)', what='M(0) on S', units=400, unit='iter'),
    dict(name='k1/translation', kind='translation', label='F(1)', what='F(1)', units=720, unit='iter'),
    dict(name='k1/translate', kind='translate', label=None, what="S'(1)", units=48, unit='image'),
    dict(name='k1/m0', kind='adaptation', label='M_0(1)', what='M_0(1)', units=400, unit='iter'),
    dict(name='k1/ssl1', kind='pseudo_label', label=None, what='pseudo labels', units=48, unit='image'),
    dict(name='k1/m1', kind='ssl_adaptation', label='M_1(1)', what='M_1(1)', units=400, unit='iter'),
]
DONE = {
    'm0': dict(status='done', kind='source_only', seconds=100.0, metrics={'mIoU': 26.4}, label='M(0)'),
    'k1/translation': dict(status='done', kind='translation', seconds=72.0),
    'k1/translate': dict(status='done', kind='translate', seconds=9.6),
    'k1/m0': dict(status='done', kind='adaptation', seconds=130.0, metrics={'mIoU': 32.3}, label='M_0(1)'),
    'k1/ssl1': dict(status='done', kind='pseudo_label', seconds=10.0, kept_ratio=0.731),
    'k1/m1': dict(status='done', kind='ssl_adaptation', seconds=140.0, metrics={'mIoU': 34.1}, label='M_1(1)',
                  kept_ratio=0.731),
}


def write_state(work, done, running=None, finished=None):
    os.makedirs(work, exist_ok=True)
    state = dict(plan=[d['name'] for d in PLAN], stages={n: DONE[n] for n in done}, plan_details=PLAN,
                 running=running, run=dict(started=NOW - 1000, finished=finished),
                 final_model=dict(path=osp.join(work, 'final_model.pth'), stage='k1/m1', label='M_1(1)'))
    with open(osp.join(work, 'bdl_state.json'), 'w') as f:
        json.dump(state, f)


def freeze_m_stage(work, stage, iters, iter_time, log_age):
    """The mmengine files of a training stage: scalars every 50 iterations, the log file last written log_age ago."""
    folder = osp.join(work, stage, '20261128_120000')
    os.makedirs(osp.join(folder, 'vis_data'))
    with open(osp.join(folder, 'vis_data', 'scalars.json'), 'w') as f:
        for it in range(50, iters + 1, 50):
            f.write(json.dumps({'segmentor.lr': 0.005, 'src.decode.loss_ce': 1.0, 'time': iter_time, 'iter': it,
                                'step': it}) + '\n')
        f.write('{"iter": 1')  # a line being written
    log = osp.join(folder, '20261128_120000.log')
    open(log, 'w').close()
    os.utime(log, (NOW - log_age, NOW - log_age))


def running_entry(stage, pid=None, host=None, started=NOW - 80):
    return dict(stage=stage, started=started, pid=os.getpid() if pid is None else pid,
                host=socket.gethostname() if host is None else host)


@pytest.fixture
def mid_run(tmp_path):
    """Frozen inside M_0(1): 250 of 400 iterations at 0.3 s, last log line 30 s ago, the process alive."""
    work = str(tmp_path / 'work')
    write_state(work, ['m0', 'k1/translation', 'k1/translate'], running=running_entry('k1/m0'))
    freeze_m_stage(work, 'k1/m0', 250, 0.3, log_age=30)
    return work


def test_mid_run_states_progress_and_eta(mid_run):
    s = run_status(mid_run, now=NOW)
    assert s['state'] == 'running' and s['stages_done'] == 3 and s['stages_total'] == 6
    assert [st['state'] for st in s['stages']] == ['done', 'done', 'done', 'running', 'pending', 'pending']
    m0 = s['stages'][0]
    assert (m0['seconds'], m0['mIoU']) == (100.0, 26.4)
    p = s['stages'][3]['progress']
    assert (p['done'], p['total'], p['fraction'], p['seconds_per_unit']) == (250, 400, 0.625, 0.3)
    assert p['last_log_s_ago'] == 30 and not p['stale']
    assert s['stages'][3]['seconds'] == 80
    # running: 150 iters x 0.3 s less the 30 s since its last log line; ssl1: 48 images at M(0)'s 0.25 s/iter;
    # m1: 400 iters at M_0(1)'s 0.3 s/iter
    assert s['eta_s'] == pytest.approx(150 * 0.3 - 30 + 48 * 0.25 + 400 * 0.3)
    assert s['eta_unmeasured'] == [] and s['finish_at'] is not None
    assert s['final_model'] == dict(path=osp.join(mid_run, 'final_model.pth'), stage='k1/m1', label='M_1(1)',
                                    exists=False)
    text = format_status(s)
    assert 'running, 3/6 stages done; remaining 0:02:27' in text
    assert '250/400 iter (62%), 0.3 s/iter, last log 0:00:30 ago' in text and 'hung?' not in text
    assert 'final model: ' + osp.join(mid_run, 'final_model.pth') + ' (M_1(1); not written yet)' in text


def test_after_a_kill_the_stage_is_interrupted(mid_run):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    write_state(mid_run, ['m0', 'k1/translation', 'k1/translate'], running=running_entry('k1/m0', pid=dead.pid))
    s = run_status(mid_run, now=NOW)
    assert s['state'] == 'interrupted' and s['running']['alive'] is False
    assert [st['state'] for st in s['stages']][3:] == ['interrupted', 'pending', 'pending']
    assert s['eta_s'] == pytest.approx(150 * 0.3 + 48 * 0.25 + 400 * 0.3) and s['finish_at'] is None  # once resumed
    text = format_status(s)
    assert 'remaining 0:02:57 once resumed' in text and f'pid {dead.pid}' in text and '--resume' in text


def test_a_hung_stage_shows(mid_run):
    write_state(mid_run, ['m0', 'k1/translation', 'k1/translate'], running=running_entry('k1/m0', started=NOW - 7200))
    log = next(p for p in (osp.join(dp, f) for dp, _, fs in os.walk(mid_run) for f in fs) if p.endswith('.log'))
    os.utime(log, (NOW - 3600, NOW - 3600))  # usual gap: 50 iters x 0.3 s = 15 s
    s = run_status(mid_run, now=NOW)
    p = s['stages'][3]['progress']
    assert s['state'] == 'running' and p['last_log_s_ago'] == 3600 and p['stale']
    assert s['eta_s'] == pytest.approx(150 * 0.3 + 48 * 0.25 + 400 * 0.3)  # no progress assumed since its last log
    assert 'last log 1:00:00 ago (hung?)' in format_status(s)


def test_a_run_on_another_host_is_judged_by_its_log(mid_run):
    write_state(mid_run, ['m0', 'k1/translation', 'k1/translate'],
                running=running_entry('k1/m0', pid=1, host='gpu-node-7'))
    s = run_status(mid_run, now=NOW, alive=lambda pid: pytest.fail('a pid of another host was checked here'))
    assert s['state'] == 'running' and s['running']['alive'] is None
    assert 'k1/m0 runs on gpu-node-7 (pid 1)' in format_status(s)


def test_pseudo_label_progress_by_image_count(tmp_path):
    work = str(tmp_path / 'work')
    write_state(work, ['m0', 'k1/translation', 'k1/translate', 'k1/m0'],
                running=running_entry('k1/ssl1', started=NOW - 6))
    pred = osp.join(work, 'k1/ssl1', '_cache', 'abc123', 'pred', 'city')
    os.makedirs(pred)
    for i in range(12):  # pass 1: 12 of 48 predictions cached
        path = osp.join(pred, f'{i}.png.npz')
        open(path, 'w').close()
        os.utime(path, (NOW - 1, NOW - 1))
    s = run_status(work, now=NOW)
    p = s['stages'][4]['progress']
    assert (p['done'], p['total'], p['unit'], p['seconds_per_unit']) == (12, 48, 'image', 0.5)
    assert p['last_log_s_ago'] == 1
    # ssl1: 36 images x 0.5 s less the 1 s since its last file; m1: 400 iters at M_0(1)'s measured 130 s / 400
    assert s['eta_s'] == pytest.approx(36 * 0.5 - 1 + 130.0)


def test_unmeasured_stages_make_the_eta_a_lower_bound(tmp_path):
    work = str(tmp_path / 'work')
    write_state(work, [], running=running_entry('m0', started=NOW - 5))  # M(0) started, no log line yet
    s = run_status(work, now=NOW)
    assert s['eta_s'] == 0 and s['eta_unmeasured'] == [d['name'] for d in PLAN]
    assert 'remaining >= 0:00:00 (6 stage(s) not measured yet)' in format_status(s)


def test_finished_run(tmp_path):
    work = str(tmp_path / 'work')
    write_state(work, list(DONE), finished=NOW - 60)
    open(osp.join(work, 'final_model.pth'), 'w').close()
    s = run_status(work, now=NOW)
    assert s['state'] == 'finished' and s['eta_s'] == 0 and s['running'] is None
    assert [st['state'] for st in s['stages']] == ['done'] * 6
    assert [st['mIoU'] for st in s['stages']] == [26.4, None, None, 32.3, None, 34.1]
    assert s['kept_ratios'] == {'k1/ssl1': 0.731} and s['final_model']['exists'] is True
    text = format_status(s)
    assert 'finished, 6/6 stages done' in text and 'pseudo labels kept: k1/ssl1 73.1%' in text


def run_tool(*args):
    return subprocess.run([sys.executable, STATUS, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_tool_json_and_text(tmp_path):
    work = str(tmp_path / 'work')
    write_state(work, list(DONE), finished=NOW - 60)
    out = run_tool(work, '--json')
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s['state'] == 'finished' and [st['name'] for st in s['stages']] == [d['name'] for d in PLAN]
    assert s == json.loads(json.dumps(run_status(work)))
    text = run_tool(work)
    assert text.returncode == 0 and text.stdout.startswith(f'BDL run {work}: finished, 6/6 stages done')


def test_tool_needs_no_training_stack(tmp_path):
    """Readable from a machine without torch: the tool loads run_status.py by path, not the bdl_mm package."""
    work = str(tmp_path / 'work')
    write_state(work, list(DONE), finished=NOW - 60)
    code = (f'import runpy, sys; tool = runpy.run_path({STATUS!r}); assert tool["main"]([{work!r}]) == 0; '
            'print(sorted(m for m in ("torch", "mmengine", "mmseg") if m in sys.modules), '
            'getattr(sys.modules.get("bdl_mm"), "__file__", None))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == '[] None'  # bdl_mm's __init__ (torch, OpenMMLab) never ran


@pytest.mark.parametrize('content, message', [
    (None, 'is not a BDL work dir: it has no bdl_state.json'),
    ('{"plan": [', 'bdl_state.json is not readable JSON'),
    ('{"stages": {}}', 'has no stage plan'),
])
def test_not_a_bdl_work_dir_is_one_line(tmp_path, content, message):
    if content is not None:
        (tmp_path / 'bdl_state.json').write_text(content)
    with pytest.raises(StatusError, match=message):
        run_status(str(tmp_path))
    out = run_tool(tmp_path)
    assert out.returncode == 2 and out.stdout == ''
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr
    missing = run_tool(tmp_path / 'nowhere')
    assert missing.returncode == 2 and missing.stderr.strip() == f'error: {tmp_path / "nowhere"}: no such directory'
