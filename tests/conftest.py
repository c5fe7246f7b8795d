"""Shared by every test folder: this folder is on sys.path (pytest's prepend import mode), so the helpers in
tests/toy_helpers.py import as `toy_helpers`; ``toy_root`` is the one toy pair of the whole session."""
import gc
import hashlib
import os

import pytest

# Tests are sized for 2 cores: one thread per process keeps parallel subprocesses from oversubscribing them.
os.environ.setdefault('OMP_NUM_THREADS', '1')


def pytest_collection_finish(session):
    """Every test module is imported: move the objects of torch, OpenMMLab and the tests into the permanent generation.
    mmengine's datasets call ``gc.collect()`` when they are built (several per stage), each a full scan of that heap
    (about 0.35 s); frozen, it is skipped. Nothing a test computes depends on it."""
    gc.freeze()


def tree_digest(root):
    """A digest of every file's path and bytes under ``root``."""
    digest = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode() + b'\0')
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory):
    """The session's toy pair (6 source, 4 target train, 2 target val) in the real on-disk formats, converted by the
    real converters. Read-only: a test that changes files copies it first (``shutil.copytree``); the session checks
    at its end that nobody wrote into it."""
    from toy_helpers import make_converted_toy
    root = make_converted_toy(tmp_path_factory.mktemp('toy'), num_source=6, num_target_train=4, num_target_val=2)
    before = tree_digest(root)
    yield root
    assert tree_digest(root) == before, f'a test wrote into the shared toy pair {root}: copy it first'
