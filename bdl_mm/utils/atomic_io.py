"""The one way this package writes a file that a later stage or a resumed run trusts: a temporary file in the
same folder, then ``os.replace``. A crash leaves either the old file, the new one, or a hidden ``.<name>.<pid>.part``
that nothing reads (listings skip hidden files; :func:`remove_stale_tmp` clears them before a rewrite)."""
import errno
import glob
import json
import os
import os.path as osp


class DiskFullError(OSError):
    """A write that failed for lack of space (ENOSPC): one line naming the file; nothing half-written is left."""

    def __init__(self, path: str):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    def __str__(self) -> str:
        return (f'no space left on the device to write {self.filename} (nothing of it was kept); free some space, '
                'then --resume')


def tmp_path(path: str) -> str:
    """The hidden temporary file ``path`` is written to before its rename (one per process: DDP ranks never
    share one)."""
    head, tail = osp.split(path)
    return osp.join(head, f'.{tail}.{os.getpid()}.part')


def remove_stale_tmp(path: str) -> None:
    """Remove the temporary files a killed writer of ``path`` left (any pid)."""
    head, tail = osp.split(path)
    for stale in glob.glob(osp.join(glob.escape(head), f'.{glob.escape(tail)}*.part')):
        os.remove(stale)


def atomic_write(path: str, write) -> str:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``; the temporary file is removed if
    ``write`` fails. Returns ``path``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = tmp_path(osp.join(folder, osp.basename(path)))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if osp.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC and not isinstance(e, DiskFullError):
            raise DiskFullError(path) from None
        raise
    return path


def atomic_write_bytes(path: str, data: bytes) -> str:
    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)
    return atomic_write(path, write)


def atomic_write_text(path: str, text: str) -> str:
    return atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path: str, obj) -> str:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + '\n').encode())


def atomic_torch_save(obj, path: str) -> str:
    """``torch.save`` through a temporary file: a checkpoint is either whole or absent."""
    import torch
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
