"""The one atomic-write helper: whole files or none, and no temporary file left behind."""
import json
import os

import pytest

from bdl_mm.utils import atomic_io
from bdl_mm.utils.atomic_io import atomic_torch_save, atomic_write_bytes, atomic_write_json, remove_stale_tmp


def test_atomic_json_leaves_no_temporary_file(tmp_path):
    atomic_write_json(str(tmp_path / 'a' / 'state.json'), dict(x=1))
    assert os.listdir(tmp_path / 'a') == ['state.json']
    assert json.load(open(tmp_path / 'a' / 'state.json')) == dict(x=1)


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'x.bin'
    atomic_write_bytes(str(path), b'old')

    class Boom(Exception):
        pass

    def bad(obj, f):
        open(f, 'wb').write(b'half')
        raise Boom()

    import torch
    real = torch.save
    torch.save = bad
    try:
        with pytest.raises(Boom):
            atomic_torch_save({'a': 1}, str(path))
    finally:
        torch.save = real
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['x.bin']


def test_stale_temporary_files_of_any_pid_are_removed(tmp_path):
    path = tmp_path / 'img[1].png'
    for name in ('.img[1].png.part', '.img[1].png.123.part', '.other.png.5.part'):
        (tmp_path / name).write_bytes(b'x')
    remove_stale_tmp(str(path))
    assert sorted(os.listdir(tmp_path)) == ['.other.png.5.part']
    assert os.path.basename(tmp_path_of(path)).startswith('.img[1].png.') and tmp_path_of(path).endswith('.part')


def tmp_path_of(path):
    return atomic_io.tmp_path(str(path))


def test_a_full_disk_names_the_file_and_keeps_nothing(tmp_path):
    """The path of every checkpoint (StageRunner hands mmengine's save to atomic_write), image and label."""
    import errno

    from bdl_mm.utils.atomic_io import DiskFullError, atomic_write

    def save(tmp):  # half the checkpoint, then the disk is full
        open(tmp, 'wb').write(b'half')
        raise OSError(errno.ENOSPC, 'No space left on device')

    with pytest.raises(DiskFullError) as info:
        atomic_write(str(tmp_path / 'iter_4.pth'), save)
    assert str(info.value).startswith(f'no space left on the device to write {tmp_path / "iter_4.pth"} (nothing')
    assert info.value.errno == errno.ENOSPC and os.listdir(tmp_path) == []
