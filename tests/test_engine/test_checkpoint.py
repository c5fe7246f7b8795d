"""Checkpoints of M alone out of a BDLSegmentor, written atomically; stage checkpoints that cannot be torn, and
the newest readable one to resume from."""
import os

import torch
import torch.nn as nn

from bdl_mm.engine.checkpoint import (
    checkpoint_to_resume,
    export_segmentor_checkpoint,
    readable_checkpoint,
    save_model_checkpoint,
)


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.segmentor = nn.Conv2d(3, 2, 1)
        self.discriminator = nn.Conv2d(2, 1, 1)


def test_segmentor_checkpoint_holds_m_alone(tmp_path):
    model = Wrapper()
    export_segmentor_checkpoint(model, str(tmp_path / 'seg.pth'))
    save_model_checkpoint(model, str(tmp_path / 'all.pth'), meta=dict(stage='M_0(1)'))
    seg = torch.load(tmp_path / 'seg.pth', weights_only=True)
    assert set(seg['state_dict']) == {'weight', 'bias'}
    assert torch.equal(seg['state_dict']['weight'], model.segmentor.weight)
    full = torch.load(tmp_path / 'all.pth', weights_only=True)
    assert set(full['state_dict']) == {'segmentor.weight', 'segmentor.bias', 'discriminator.weight',
                                       'discriminator.bias'}
    assert full['meta']['stage'] == 'M_0(1)'
    assert sorted(os.listdir(tmp_path)) == ['all.pth', 'seg.pth']


def write_checkpoints(folder, steps):
    for step in steps:
        torch.save(dict(state_dict=dict(w=torch.full((64, 64), float(step))), meta=dict(iter=step)),
                   folder / f'iter_{step}.pth')
    (folder / 'last_checkpoint').write_text(str(folder / f'iter_{steps[-1]}.pth'))


class Warnings:
    def __init__(self):
        self.lines = []

    def warning(self, msg):
        self.lines.append(msg)


def test_torn_newest_checkpoint_resumes_from_the_one_before_naming_it(tmp_path):
    write_checkpoints(tmp_path, [2, 4, 6])
    assert checkpoint_to_resume(str(tmp_path)) == (str(tmp_path / 'iter_6.pth'), True)
    newest = tmp_path / 'iter_6.pth'
    newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])  # cut by a kill or a full disk
    log = Warnings()
    assert checkpoint_to_resume(str(tmp_path), log) == (str(tmp_path / 'iter_4.pth'), False)
    assert len(log.lines) == 1 and str(newest) in log.lines[0] and 'unreadable' in log.lines[0]
    # every checkpoint torn: the stage starts again, and says so
    for step in (2, 4):
        path = tmp_path / f'iter_{step}.pth'
        path.write_bytes(path.read_bytes()[:100])
    log = Warnings()
    assert checkpoint_to_resume(str(tmp_path), log) == (None, False)
    assert len(log.lines) == 4 and 'starts again' in log.lines[-1]


def test_a_flipped_byte_is_caught_too(tmp_path):
    write_checkpoints(tmp_path, [2])
    path = tmp_path / 'iter_2.pth'
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the stored tensor: the member's CRC no longer matches
    path.write_bytes(bytes(data))
    assert not readable_checkpoint(str(path))
    assert checkpoint_to_resume(str(tmp_path)) == (None, False)


def test_no_last_checkpoint_means_a_fresh_stage(tmp_path):
    assert checkpoint_to_resume(str(tmp_path)) == (None, False)


def test_outer_runner_of_algorithm1_loads_load_from_on_resume_and_resumes_nothing():
    """`tools/train.py configs/bdl_gta5.py --cfg-options load_from=INIT --resume`: mmengine's load_or_resume would
    resume the outer runner from INIT (an initialisation without meta.epoch: KeyError 'epoch'); the outer runner of
    Algorithm 1 only loads it, and the loop resumes each stage from that stage's own checkpoints."""
    from types import SimpleNamespace

    from bdl_mm.engine.loops import BidirectionalLoop
    from bdl_mm.engine.runner.stage_runner import StageRunner
    assert BidirectionalLoop.resumes_stages
    calls = []
    runner = SimpleNamespace(_resume=True, _load_from='init.pth', _has_loaded=False,
                             _train_loop=SimpleNamespace(resumes_stages=True),
                             load_checkpoint=lambda path: calls.append(('load', path)),
                             resume=lambda path: calls.append(('resume', path)))
    StageRunner.load_or_resume(runner)
    assert calls == [('load', 'init.pth')] and runner._has_loaded
    StageRunner.load_or_resume(runner)  # loaded once
    assert calls == [('load', 'init.pth')]
    runner = SimpleNamespace(**dict(vars(runner), _load_from=None, _has_loaded=False))
    StageRunner.load_or_resume(runner)  # no load_from: nothing (the initial weights are the outer model's init)
    assert calls == [('load', 'init.pth')]


def test_a_full_disk_during_a_stage_checkpoint_keeps_the_one_before_for_resume(tmp_path, monkeypatch):
    """A real StageRunner trains 4 iterations with a checkpoint every 2; the disk fills while iter_4.pth is written
    (half its bytes go down, then ENOSPC). The run ends naming iter_4.pth, nothing of it is left, and a resume takes
    iter_2.pth, whole."""
    import errno
    import io

    import mmengine.fileio.backends.local_backend as local_backend
    import pytest
    from mmengine.model import BaseModel
    from torch.utils.data import DataLoader

    from bdl_mm.engine.runner import StageRunner
    from bdl_mm.utils.atomic_io import DiskFullError

    class Tiny(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='loss'):
            return dict(loss=self.fc(torch.stack(inputs) if isinstance(inputs, list) else inputs).pow(2).mean())

    real_open, writes = open, []

    class HalfWriter(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[:len(data) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device')

    def fake_open(path, mode='r', *args, **kwargs):  # mmengine's local backend: checkpoints and last_checkpoint
        if 'w' in mode:
            writes.append(os.path.basename(str(path)))
            if str(path).endswith('.part') and len([w for w in writes if w.endswith('.part')]) == 2:
                return HalfWriter(path, 'w')
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(local_backend, 'open', fake_open, raising=False)
    data = DataLoader([dict(inputs=torch.ones(2))] * 8, batch_size=1, collate_fn=lambda b: dict(inputs=b[0]['inputs']))
    runner = StageRunner(model=Tiny(), work_dir=str(tmp_path), train_dataloader=data,
                         train_cfg=dict(by_epoch=False, max_iters=4),
                         optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
                         default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
                         default_scope='mmengine')
    with pytest.raises(DiskFullError) as info:
        runner.train()
    assert str(tmp_path / 'iter_4.pth') in str(info.value)
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(('.pth', '.part')) or f.startswith(('.', 'last')))
    assert files == ['iter_2.pth', 'last_checkpoint']  # no iter_4.pth, no temporary file
    assert checkpoint_to_resume(str(tmp_path)) == (str(tmp_path / 'iter_2.pth'), True)
    assert readable_checkpoint(str(tmp_path / 'iter_2.pth'))
