"""One run per work dir (bdl_run.lock): a second launch is refused while the first runs, a lock left by a dead
process on this host is taken over with a warning, a record of another host needs --force-resume."""
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import pytest
from toy_helpers import ROOT, write_bdl_config

from bdl_mm.engine.work_dir_lock import LOCK_FILE, WorkDirInUseError, WorkDirLock

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from bdl_mm.engine.work_dir_lock import WorkDirLock
WorkDirLock({work!r}).acquire()
print('held', flush=True)
time.sleep(600)
"""


class Warnings:
    def __init__(self):
        self.lines = []

    def warning(self, msg):
        self.lines.append(msg)


def hold_in_another_process(work):
    proc = subprocess.Popen([sys.executable, '-c', HOLD.format(root=ROOT, work=str(work))], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == 'held'
    return proc


def test_live_holder_refuses_in_one_line_naming_pid_and_host(tmp_path):
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(WorkDirInUseError) as info:
            WorkDirLock(str(tmp_path)).acquire(force=True)  # --force-resume does not take a live lock
        msg = str(info.value)
        assert '\n' not in msg and f'pid {holder.pid} on host {socket.gethostname()}' in msg
        assert 'in use by another run' in msg
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    holder = hold_in_another_process(tmp_path)
    holder.send_signal(signal.SIGKILL)  # killed: its record stays, its lock is gone
    holder.wait()
    assert json.load(open(tmp_path / LOCK_FILE))['pid'] == holder.pid
    log = Warnings()
    lock = WorkDirLock(str(tmp_path)).acquire(logger=log)
    assert len(log.lines) == 1 and f'pid {holder.pid}' in log.lines[0] and 'no longer running' in log.lines[0]
    assert json.load(open(tmp_path / LOCK_FILE))['pid'] == os.getpid()
    lock.release()
    assert (tmp_path / LOCK_FILE).read_text() == ''  # a clean end leaves an empty record
    again = WorkDirLock(str(tmp_path)).acquire(logger=log)
    assert len(log.lines) == 1  # nothing to take over
    again.release()


def test_record_of_another_host_needs_force_resume(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps(dict(pid=4242, host='node-17', started=time.time())))
    with pytest.raises(WorkDirInUseError, match=r'locked by pid 4242 on host node-17 .*pass --force-resume'):
        WorkDirLock(str(tmp_path)).acquire()
    log = Warnings()
    lock = WorkDirLock(str(tmp_path)).acquire(force=True, logger=log)
    assert 'node-17' in log.lines[0] and '--force-resume' in log.lines[0]
    assert json.load(open(tmp_path / LOCK_FILE))['host'] == socket.gethostname()
    lock.release()


def test_the_same_process_cannot_take_it_twice(tmp_path):
    with WorkDirLock(str(tmp_path)):
        with pytest.raises(WorkDirInUseError, match='already in use by this process'):
            WorkDirLock(str(tmp_path)).acquire()
    WorkDirLock(str(tmp_path)).acquire().release()  # released: free again


def test_second_launch_is_refused_while_the_first_runs(toy_root, tmp_path):
    # M(0) far longer than a second launch takes under load (the run is killed at the end): it is still in m0
    config = write_bdl_config(tmp_path / 'cfg.py', toy_root, m_iters=5000, ckpt_interval=5000)
    work = tmp_path / 'work'
    train = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', str(work)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    first = subprocess.Popen(train, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                             start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            state = osp.join(work, 'bdl_state.json')
            if osp.isfile(state) and (json.load(open(state)).get('running') or {}).get('stage') == 'm0':
                break
            time.sleep(0.2)
        assert first.poll() is None, 'the first run ended before the second launch'
        second = subprocess.run(train + ['--resume'], capture_output=True, text=True, timeout=300, env=env)
        assert second.returncode == 1
        error = second.stderr.strip().splitlines()[-1]
        assert error.startswith('error: ') and f'in use by another run: pid {first.pid} on host ' in error
        assert first.poll() is None  # the first run goes on
        assert not osp.exists(osp.join(work, 'k1'))
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
