"""One run per work dir: ``<work_dir>/bdl_run.lock``.

The run's main process holds an exclusive POSIX lock (``fcntl.lockf``) on the file for as long as it runs, and
writes into it who it is (pid, host, start time). The kernel drops the lock when the process dies, however it dies
(and, unlike ``flock``, the data loader workers it forks do not inherit it), so:

- a second launch while the first runs (a Slurm requeue, a second terminal) cannot take the lock and is refused in
  one line naming the holder's pid and host;
- a lock file left by a process that died on this host (its lock is gone, its record is still there) is taken
  over with a warning naming the dead pid;
- a record written on another host cannot be checked from here (locks over a shared file system are not
  reliable everywhere): the launch is refused unless ``--force-resume``, and the message says so.

A run that ends, well or with an error, empties the file and lets go of it. The file itself is never removed, so
two launches always lock the same inode. (mmengine has no such lock; written by hand.)
"""
import errno
import fcntl
import json
import os
import os.path as osp
import socket
import time
from typing import Optional

from .fingerprint import RunMixError

LOCK_FILE = 'bdl_run.lock'
# the lock files this process holds: a POSIX lock is per process, and closing any descriptor of the file drops it
_HELD = set()


class WorkDirInUseError(RunMixError):
    """The work dir is held by another run (one line naming its pid and host)."""


def _holder(fd: int) -> Optional[dict]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode('utf-8', 'replace').strip()
    if not text:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return dict(pid='?', host='?', unreadable=text[:80])
    return holder if isinstance(holder, dict) else dict(pid='?', host='?', unreadable=text[:80])


def _since(holder: dict) -> str:
    started = holder.get('started')
    return '' if not isinstance(started, (int, float)) else \
        f' since {time.strftime("%Y-%m-%d %H:%M", time.localtime(started))}'


class WorkDirLock:
    """``acquire()`` the work dir for this process, ``release()`` it at the end (also a context manager)."""

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_FILE)
        self.fd: Optional[int] = None

    def acquire(self, force: bool = False, logger=None) -> 'WorkDirLock':
        """Take the lock or raise :class:`WorkDirInUseError`; ``force`` takes over a record of another host.
        Returns self; a takeover is reported through ``logger.warning``."""
        os.makedirs(self.work_dir, exist_ok=True)
        key = osp.realpath(self.path)
        if key in _HELD:
            raise WorkDirInUseError(f'{self.work_dir} is already in use by this process (pid {os.getpid()})')
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                holder = _holder(fd) or {}
                raise WorkDirInUseError(
                    f'{self.work_dir} is in use by another run: pid {holder.get("pid", "?")} on host '
                    f'{holder.get("host", "?")}{_since(holder)} ({self.path}); wait for it to end or use another '
                    '--work-dir') from None
            holder = _holder(fd)
            host = socket.gethostname()
            if holder is not None:
                if holder.get('host') != host and not force:
                    raise WorkDirInUseError(
                        f'{self.work_dir} is locked by pid {holder.get("pid", "?")} on host {holder.get("host", "?")}'
                        f'{_since(holder)} ({self.path}); this host ({host}) cannot tell whether that run is still '
                        'going: if it is not, pass --force-resume to take the work dir over')
                if logger is not None:
                    logger.warning(f'[BDL] taking over the lock of pid {holder.get("pid", "?")} on host '
                                   f'{holder.get("host", "?")}{_since(holder)}, '
                                   + ('which is no longer running' if holder.get('host') == host
                                      else 'another host (--force-resume)') + f' ({self.path})')
            record = json.dumps(dict(pid=os.getpid(), host=host, started=time.time())) + '\n'
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, record.encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        _HELD.add(key)
        return self

    def release(self):
        """Empty the record and let go of the lock (the file stays: see the module's docstring)."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)  # closing drops the lock
            self.fd = None
            _HELD.discard(osp.realpath(self.path))

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
