"""Where an Algorithm-1 run stands, read from its work dir alone (``tools/status.py WORK_DIR [--json]``).

Standard library only, so that the status can be read from any shell or machine that sees the work dir, even
one without the training stack. Sources, all written by the run itself:

- ``bdl_state.json`` (written atomically by :class:`~bdl_mm.engine.loops.BidirectionalLoop`): ``plan`` (stage
  names), ``plan_details`` (per stage: kind, model label, what it trains, planned units: iterations for the
  training stages, images for translation and pseudo labelling), ``stages`` (the completed stages: seconds,
  metrics, kept ratio ...), ``running`` (the stage in progress: start time, pid, host), ``run`` (start, end,
  final model);
- the running training stage's mmengine scalars, ``<stage>/<timestamp>/vis_data/scalars.json`` (iteration and
  seconds per iteration of every log interval), and its log file ``<stage>/<timestamp>/<timestamp>.log``;
- for a translation or pseudo-label stage, the images written so far in its folder.

States: ``done``, ``running``, ``interrupted`` (the process that ran the stage is gone: checked when the status
is read on the host that runs it), ``pending``. The ETA of the whole run adds the running stage's remaining
iterations at its measured time per iteration and each pending stage's planned units at the measured time per
unit of its kind (seconds / planned units of the completed stages, validation and checkpoints included); a
kind not measured yet borrows the rate of a related kind (:data:`RATE_FALLBACK`).
"""
import datetime
import glob
import json
import os
import os.path as osp
import socket
import time
from typing import Dict, List, Optional

from ..structures.stage_kinds import (
    ADAPTATION,
    ORACLE,
    PSEUDO_LABEL,
    SOURCE_ONLY,
    SSL_ADAPTATION,
    TRANSLATE,
    TRANSLATION,
)

STATE_FILE = 'bdl_state.json'
# a kind without a measurement borrows, in this order, the rate per unit of another kind: a translated image costs
# about one F iteration (else one M iteration), a pseudo-labelled image about one M iteration
RATE_FALLBACK = {
    SOURCE_ONLY: (ADAPTATION, SSL_ADAPTATION),
    ORACLE: (SOURCE_ONLY, ADAPTATION, SSL_ADAPTATION),
    ADAPTATION: (SSL_ADAPTATION, SOURCE_ONLY),
    SSL_ADAPTATION: (ADAPTATION, SOURCE_ONLY),
    TRANSLATION: (ADAPTATION, SSL_ADAPTATION, SOURCE_ONLY),
    TRANSLATE: (TRANSLATION, SOURCE_ONLY, ADAPTATION, SSL_ADAPTATION),
    PSEUDO_LABEL: (SOURCE_ONLY, ADAPTATION, SSL_ADAPTATION),
}
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# a running stage whose last log line is older than max(STALE_MIN_S, STALE_FACTOR x its usual gap) may hang
STALE_MIN_S = 600
STALE_FACTOR = 10


class StatusError(Exception):
    """The folder is not a readable BDL work dir (one line)."""


def format_duration(seconds: Optional[float]) -> str:
    """``1:02:03`` style (``2 days, 1:02:03``), ``?`` if unknown."""
    if seconds is None or seconds != seconds:
        return '?'
    return str(datetime.timedelta(seconds=int(round(max(0., float(seconds))))))


def read_state(work_dir: str) -> dict:
    """``<work_dir>/bdl_state.json``, or :class:`StatusError` saying in one line why not."""
    if not osp.isdir(work_dir):
        raise StatusError(f'{work_dir}: no such directory')
    path = osp.join(work_dir, STATE_FILE)
    if not osp.isfile(path):
        raise StatusError(f'{work_dir} is not a BDL work dir: it has no {STATE_FILE} (a run of tools/train.py '
                          'with a BidirectionalLoop config writes it when its first stage starts)')
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError) as e:
        raise StatusError(f'{path} is not readable JSON: {e}') from None
    if not isinstance(state, dict) or not isinstance(state.get('plan'), list):
        raise StatusError(f'{path} has no stage plan: not the state of a BDL run')
    return state


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a killed process not yet reaped by its parent (a zombie) is gone too
        with open(f'/proc/{int(pid)}/stat') as f:
            return f.read().rsplit(')', 1)[-1].split()[0] != 'Z'
    except (OSError, IndexError):
        return True


# ------------------------------------------------------------------------------------------- stage progress
def _train_scalars(stage_dir: str) -> dict:
    """Iterations done and seconds per iteration from mmengine's ``scalars.json`` files of a stage (every
    ``<timestamp>`` folder: a resumed stage has several)."""
    done, iter_time, gap = 0, None, None
    for path in sorted(glob.glob(osp.join(stage_dir, '*', 'vis_data', 'scalars.json'))):
        train = []
        try:
            with open(path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a line being written
                    if isinstance(entry, dict) and 'iter' in entry and any(k.endswith('lr') for k in entry):
                        train.append(entry)
        except OSError:
            continue
        if train:
            done = max(done, max(int(e['iter']) for e in train))
            times = [float(e['time']) for e in train[-5:] if 'time' in e]
            if times:
                iter_time = sum(times) / len(times)
            if len(train) > 1:
                gap = int(train[-1]['iter']) - int(train[-2]['iter'])
    return dict(done=done, iter_time=iter_time, log_gap=gap)


def _last_log_time(stage_dir: str) -> Optional[float]:
    mtimes = [osp.getmtime(p) for p in glob.glob(osp.join(stage_dir, '*', '*.log'))]
    return max(mtimes) if mtimes else None


def _image_files(stage_dir: str, kind: str) -> Dict[str, float]:
    """Images written by a translation or pseudo-label stage (count, newest mtime)."""
    count, cache, newest = 0, 0, None
    for root, dirs, files in os.walk(stage_dir):
        in_cache = '_cache' in osp.relpath(root, stage_dir).split(os.sep)
        for name in files:
            if name.startswith('.'):
                continue  # a file being written
            path = osp.join(root, name)
            try:
                mtime = osp.getmtime(path)
            except OSError:
                continue
            newest = mtime if newest is None else max(newest, mtime)
            if kind == 'pseudo_label':
                if in_cache:
                    cache += name.endswith('.npz') and not name.startswith('hist_')
                elif name.endswith('.png') and not name.endswith('_conf.png') and name != 'threshold_study.png':
                    count += 1
            elif name.lower().endswith(IMAGE_SUFFIXES):
                count += 1
    # pseudo labels: pass 1 caches one prediction per image (the costly part), pass 2 writes the labels
    return dict(done=max(count, cache), newest=newest)


def _running_progress(work_dir: str, detail: dict, running: dict, now: float) -> dict:
    stage_dir = osp.join(work_dir, detail['name'])
    total, unit = detail.get('units'), detail.get('unit')
    started = running.get('started') or now
    if unit == 'image':
        files = _image_files(stage_dir, detail.get('kind'))
        done, last = files['done'], files['newest']
        rate = (now - started) / done if done else None
        gap = rate
    else:
        scalars = _train_scalars(stage_dir)
        done, rate, last = scalars['done'], scalars['iter_time'], _last_log_time(stage_dir)
        gap = rate * scalars['log_gap'] if rate is not None and scalars['log_gap'] else None
    if total:
        done = min(done, total)
    last = max(last or started, started)
    since = max(0., now - last)
    stale = since > max(STALE_MIN_S, STALE_FACTOR * gap) if gap else since > STALE_MIN_S
    return dict(done=done, total=total, unit=unit, fraction=(done / total) if total else None,
                seconds_per_unit=rate, last_log_s_ago=round(since, 1), stale=bool(stale))


# ---------------------------------------------------------------------------------------------------- status
def _rates(details: List[dict], stages: Dict[str, dict]) -> Dict[str, float]:
    """Seconds per planned unit of each kind, from the completed stages."""
    seconds, units = {}, {}
    for d in details:
        done = stages.get(d['name'])
        if done and done.get('status') == 'done' and d.get('units') and done.get('seconds') is not None:
            seconds[d['kind']] = seconds.get(d['kind'], 0.) + float(done['seconds'])
            units[d['kind']] = units.get(d['kind'], 0) + d['units']
    return {k: seconds[k] / units[k] for k in seconds}


def _rate_for(kind: str, rates: Dict[str, float]) -> Optional[float]:
    for k in (kind, ) + RATE_FALLBACK.get(kind, ()):
        if k in rates:
            return rates[k]
    return None


def run_status(work_dir: str, now: Optional[float] = None, alive=pid_alive) -> dict:
    """The status of the run in ``work_dir`` as a JSON-serialisable dict (see the module docstring).

    ``now`` and ``alive`` (pid -> bool) are for tests.
    """
    now = time.time() if now is None else now
    state = read_state(work_dir)
    stages = state.get('stages') or {}
    details = state.get('plan_details') or [dict(name=n, kind=(stages.get(n) or {}).get('kind')) for n in state['plan']]
    running = state.get('running') or None
    run = state.get('run') or {}
    host = socket.gethostname()

    overall = 'not started'
    alive_flag = None
    if run.get('finished'):
        overall, running = 'finished', None
    elif running:
        if running.get('host') == host and running.get('pid') is not None:
            alive_flag = bool(alive(running['pid']))
        overall = 'interrupted' if alive_flag is False else 'running'
    elif stages:
        overall = 'stopped'

    rates = _rates(details, stages)
    out_stages, eta, unknown = [], 0., []
    running_progress = None
    if running and running.get('stage') in [d['name'] for d in details]:
        detail = next(d for d in details if d['name'] == running['stage'])
        running_progress = _running_progress(work_dir, detail, running, now)
        if running_progress['seconds_per_unit'] is not None:
            rates.setdefault(detail['kind'], running_progress['seconds_per_unit'])
    for d in details:
        name = d['name']
        entry = dict(name=name, kind=d.get('kind'), label=d.get('label'), what=d.get('what'), units=d.get('units'),
                     unit=d.get('unit'), state='pending', seconds=None, mIoU=None, kept_ratio=None, progress=None)
        done = stages.get(name)
        if done and done.get('status') == 'done':
            metrics = done.get('metrics') or {}
            entry.update(state='done', seconds=done.get('seconds'), mIoU=metrics.get('mIoU'),
                         kept_ratio=done.get('kept_ratio') if d.get('kind') == 'pseudo_label' else None)
            out_stages.append(entry)
            continue
        remaining, since_log = d.get('units'), 0.
        if running and running.get('stage') == name:
            entry.update(state='interrupted' if overall == 'interrupted' else 'running',
                         seconds=round(now - running.get('started', now), 1), progress=running_progress)
            if remaining is not None:
                remaining -= running_progress['done']
            rate = running_progress['seconds_per_unit'] or _rate_for(d.get('kind'), rates)
            if overall == 'running' and not running_progress['stale']:
                since_log = running_progress['last_log_s_ago']  # work done since the last log line
        else:
            rate = _rate_for(d.get('kind'), rates)
        if remaining is None or d.get('unit') is None:
            remaining = 0  # an imported M(0): evaluation only
        if remaining and rate is None:
            unknown.append(name)
        elif remaining:
            eta += max(0., remaining * rate - since_log)
        out_stages.append(entry)

    final = dict(state.get('final_model') or {})
    if final.get('path'):
        final['exists'] = osp.isfile(final['path'])
    kept = {s['name']: s['kept_ratio'] for s in out_stages if s['kept_ratio'] is not None}
    finished = overall == 'finished'
    eta_s = 0. if finished else round(eta, 1)
    return dict(
        work_dir=osp.abspath(work_dir),
        state=overall,
        stages_done=sum(s['state'] == 'done' for s in out_stages),
        stages_total=len(out_stages),
        running=dict(stage=running.get('stage'), pid=running.get('pid'), host=running.get('host'),
                     alive=alive_flag) if running else None,
        started=run.get('started'),
        finished=run.get('finished'),
        eta_s=eta_s,
        eta_unmeasured=[] if finished else unknown,
        finish_at=None if finished or overall == 'interrupted' else _clock(now + eta_s),
        stages=out_stages,
        kept_ratios=kept,
        final_model=final or None,
        results=[p for p in (osp.join(osp.abspath(work_dir), f'results.{ext}') for ext in ('md', 'json', 'png'))
                 if osp.isfile(p)],
    )


def _clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime('%Y-%m-%d %H:%M')


def _pct(x) -> str:
    return '-' if x is None else f'{100 * x:.1f}%'


def format_status(status: dict) -> str:
    """The status as a few lines of text."""
    s = status
    head = f'BDL run {s["work_dir"]}: {s["state"]}, {s["stages_done"]}/{s["stages_total"]} stages done'
    if s['state'] == 'finished':
        head += f'; finished {_clock(s["finished"])}' if s.get('finished') else ''
    else:
        eta = format_duration(s['eta_s'])
        if s['eta_unmeasured']:
            eta = f'>= {eta} ({len(s["eta_unmeasured"])} stage(s) not measured yet)'
        head += f'; remaining {eta}'
        if s['finish_at']:
            head += f', ends about {s["finish_at"]}'
        elif s['state'] == 'interrupted':
            head += ' once resumed'
    lines = [head]
    run = s.get('running')
    if run and s['state'] == 'interrupted':
        lines.append(f'the process that ran {run["stage"]} (pid {run["pid"]} on {run["host"]}) is gone: '
                     'resume with tools/train.py CONFIG --work-dir WORK_DIR --resume')
    elif run and run.get('alive') is None:
        lines.append(f'{run["stage"]} runs on {run["host"]} (pid {run["pid"]}); judge by its last log line below')
    rows = [('stage', 'what', 'state', 'time', 'mIoU', 'progress')]
    for st in s['stages']:
        progress = ''
        p = st['progress']
        if p:
            total = p['total'] if p['total'] is not None else '?'
            progress = f'{p["done"]}/{total} {p["unit"] or "iter"}'
            if p['fraction'] is not None:
                progress += f' ({100 * p["fraction"]:.0f}%)'
            if p['seconds_per_unit'] is not None:
                progress += f', {p["seconds_per_unit"]:.3g} s/{p["unit"] or "iter"}'
            progress += f', last log {format_duration(p["last_log_s_ago"])} ago'
            if p['stale'] and st['state'] == 'running':
                progress += ' (hung?)'
        elif st['state'] == 'pending' and st['units']:
            progress = f'{st["units"]} {st["unit"]}s'
        elif st['kept_ratio'] is not None:
            progress = f'kept {_pct(st["kept_ratio"])}'
        rows.append((st['name'], st['what'] or st['kind'] or '', st['state'],
                     format_duration(st['seconds']) if st['seconds'] is not None else '',
                     f'{st["mIoU"]:.1f}' if st['mIoU'] is not None else '', progress))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    lines += ['  ' + '  '.join(str(c).ljust(w) for c, w in zip(r[:5], widths)) + '  ' + r[5] for r in rows]
    lines = [line.rstrip() for line in lines]
    if s['kept_ratios']:
        lines.append('pseudo labels kept: ' + ', '.join(f'{k} {_pct(v)}' for k, v in s['kept_ratios'].items()))
    final = s.get('final_model')
    if final and final.get('path'):
        lines.append(f'final model: {final["path"]} ({final.get("label") or final.get("stage")}; '
                     f'{"written" if final.get("exists") else "not written yet"})')
    if s['results']:
        lines.append('results: ' + ', '.join(s['results']))
    return '\n'.join(lines)
