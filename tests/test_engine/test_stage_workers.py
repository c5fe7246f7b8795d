"""A finished stage stops its data-loader workers at once (persistent_workers=True, as in the real configs): a
stage's runner is otherwise freed only by the garbage collector, and its forked workers pin the memory the training
process had when they forked (found by the dress rehearsal of configs/bdl_gta5_vgg16.py)."""
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torch.utils.data import DataLoader

from bdl_mm.engine.runner import StageRunner
from bdl_mm.engine.stages.common import release_workers


class Tiny(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='loss'):
        return dict(loss=self.fc(inputs).pow(2).mean())


def collate(batch):
    return dict(inputs=torch.stack([b['inputs'] for b in batch]))


def test_release_workers_stops_the_persistent_workers_of_a_finished_stage(tmp_path):
    data = DataLoader([dict(inputs=torch.ones(2))] * 4, batch_size=2, num_workers=2, persistent_workers=True,
                      collate_fn=collate)
    runner = StageRunner(model=Tiny(), work_dir=str(tmp_path), train_dataloader=data,
                         train_cfg=dict(by_epoch=False, max_iters=3),
                         optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
                         default_hooks=dict(checkpoint=None), default_scope='mmengine')
    runner.train()
    workers = list(data._iterator._workers)
    assert len(workers) == 2 and all(w.is_alive() for w in workers)  # alive after the stage: persistent
    assert release_workers(runner) == 2
    assert data._iterator is None and not any(w.is_alive() for w in workers)
    assert release_workers(runner) == 0  # nothing left to stop


def test_release_memory_collects_cycles_and_returns_the_freed_heap():
    """After a stage: its cyclic garbage (runner <-> loop) is collected, and the heap malloc keeps after a free is
    handed back (glibc: 3,000 freed 64 KiB buffers, ~188 MiB, stay resident until the trim)."""
    import ctypes.util
    import gc
    import os
    import weakref

    from bdl_mm.utils.data_workers import release_memory

    class Node:
        pass

    def resident_mib():
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    gc.disable()  # no automatic collection in between: only release_memory may free the cycle
    try:
        del a, b
        assert ref() is not None
        buffers = [bytearray(64 * 1024) for _ in range(3000)]
        keep = bytearray(64 * 1024)  # noqa: F841 - a live block above the freed ones: free() cannot trim them
        del buffers
        before = resident_mib()
        assert release_memory() >= 2 and ref() is None
    finally:
        gc.enable()
    if ctypes.util.find_library('c') and hasattr(ctypes.CDLL(ctypes.util.find_library('c')), 'malloc_trim'):
        assert before - resident_mib() > 100
