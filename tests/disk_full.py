"""A full disk, simulated for the package's one atomic writer (``bdl_mm/utils/atomic_io.py``): from the ``after``-th
file on, each write puts half its bytes down, then fails with ENOSPC, as a full disk does."""
import errno
import io

from bdl_mm.utils import atomic_io


def fill_disk_after(monkeypatch, after: int):
    real_open, count = open, [0]

    class HalfWriter(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device')

    def fake_open(path, mode='r', *args, **kwargs):
        if 'w' in mode:
            count[0] += 1
            if count[0] > after:
                return HalfWriter(path, 'w')
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(atomic_io, 'open', fake_open, raising=False)
    return count
