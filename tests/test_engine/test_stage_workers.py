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
