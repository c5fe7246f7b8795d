"""Non-finite losses (issue 13, item 3): a NaN/inf loss stops the stage naming the stage, the iteration and the term,
before it reaches the weights, and the last good checkpoint resumes; ``skip`` skips the batch and counts it."""
import json
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmseg.registry import HOOKS
from toy_helpers import write_bdl_config

from bdl_mm.engine.hooks import NonFiniteLossError


class Tiny(BaseModel):
    """Linear model; at the iterations in ``bad`` its loss ``loss_bad`` is NaN (or ``value``)."""

    def __init__(self, bad=(), value=float('nan')):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.bad, self.value = set(bad), value

    def forward(self, inputs, data_samples=None, mode='loss'):
        loss = self.fc(torch.stack(inputs)).pow(2).mean()
        out = dict(loss_main=loss)
        if MessageHub.get_current_instance().get_info('iter') + 1 in self.bad:
            out['loss_bad'] = loss * self.value
        return out


class DirectBackward(Tiny):
    """Backpropagates a loss without parse_losses, as BDLSegmentor does for D_M."""

    def train_step(self, data, optim_wrapper):
        with optim_wrapper.optim_context(self):
            losses = self(**self.data_preprocessor(data, True))
        loss = sum(losses.values())
        optim_wrapper.update_params(loss)
        return dict(loss=loss.detach())


class Snapshot(Hook):
    """The weights before and after each iteration."""

    def __init__(self):
        self.before, self.after = {}, {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before[runner.iter + 1] = runner.model.fc.weight.detach().clone()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.after[runner.iter + 1] = runner.model.fc.weight.detach().clone()


def make_runner(work_dir, model, resume=False, max_iters=5, name='tiny', **hook):
    snapshot = Snapshot()
    runner = Runner(model=model, work_dir=str(work_dir), experiment_name=f'{name}_{osp.basename(work_dir)}_{resume}',
                    default_scope='mmseg', train_cfg=dict(by_epoch=False, max_iters=max_iters),
                    train_dataloader=dict(dataset=[dict(inputs=torch.ones(2))] * 8, batch_size=2,
                                          sampler=dict(type='InfiniteSampler', shuffle=False),
                                          collate_fn=dict(type='pseudo_collate')),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                    default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False)),
                    custom_hooks=[dict(type='NonFiniteLossHook', stage='toy/m1', **hook), snapshot], resume=resume)
    return runner, snapshot


def test_stop_names_stage_iteration_term_and_keeps_the_last_good_checkpoint(tmp_path):
    runner, snapshot = make_runner(tmp_path, Tiny(bad={3}))
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    msg = str(info.value)
    assert '\n' not in msg
    assert msg.startswith('stage toy/m1: non-finite loss at iteration 3: loss_bad = nan')
    assert f'the last good checkpoint is {tmp_path}/iter_2.pth: --resume continues from it' in msg
    # the bad loss never reached the weights: they are still those of iteration 2, as saved
    saved = torch.load(tmp_path / 'iter_2.pth', weights_only=True)['state_dict']['fc.weight']
    assert torch.equal(runner.model.fc.weight.detach(), saved) and torch.isfinite(saved).all()
    assert torch.equal(snapshot.after[2], saved) and not osp.exists(tmp_path / 'iter_3.pth')

    # resumed with action='skip': iteration 3 is skipped (weights unchanged), counted, and training finishes
    resumed, snap = make_runner(tmp_path, Tiny(bad={3}), resume=True, action='skip')
    resumed.train()
    assert resumed.iter == 5 and 1 not in snap.before  # it resumed from iteration 2
    assert torch.equal(snap.before[3], snap.after[3]) and not torch.equal(snap.before[4], snap.after[4])
    counts = json.load(open(tmp_path / 'non_finite_skips.json'))
    assert counts == dict(stage='toy/m1', skipped=1, per_term=dict(loss_bad=1), last_iteration=3)
    assert resumed.message_hub.get_info('bdl/non_finite_skips') == dict(loss_bad=1)


def test_inf_in_a_loss_backpropagated_without_parse_losses(tmp_path):
    runner, _ = make_runner(tmp_path, DirectBackward(bad={2}, value=float('inf')))
    with pytest.raises(NonFiniteLossError, match='iteration 2: the loss given to optim_wrapper = inf'):
        runner.train()


def test_skips_are_capped_by_max_skips(tmp_path):
    runner, snapshot = make_runner(tmp_path, Tiny(bad={2, 3, 4}), action='skip', max_skips=2)
    with pytest.raises(NonFiniteLossError, match='iteration 4: loss_bad = nan after 2 skipped batches'):
        runner.train()
    assert torch.equal(snapshot.before[2], snapshot.after[3])  # iterations 2 and 3 skipped


@HOOKS.register_module(name='_TestPoisonLossHook', force=True)
class PoisonLoss(Hook):
    """Sets every loss weight of the model to NaN during iteration ``at`` of each training stage."""

    def __init__(self, at=3):
        self.at, self.saved = at, []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            for module in runner.model.modules():
                if isinstance(getattr(module, 'loss_weight', None), float):
                    self.saved.append((module, module.loss_weight))
                    module.loss_weight = float('nan')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for module, weight in self.saved:
            module.loss_weight = weight
        self.saved = []


def test_algorithm1_stage_stops_then_resumes_skipping(tmp_path, toy_root):
    toy = toy_root
    config = write_bdl_config(tmp_path / 'cfg.py', toy, m_iters=4, ckpt_interval=2,
                              loop_options='use_translation=False, use_ssl=False, sample_sheets=False,',
                              extra="custom_hooks = [dict(type='_TestPoisonLossHook', at=3)]")
    work = tmp_path / 'work'
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work)
    with pytest.raises(NonFiniteLossError) as info:
        Runner.from_cfg(cfg).train()
    msg = str(info.value)
    assert msg.startswith('stage m0: non-finite loss at iteration 3: ') and 'loss_ce = nan' in msg, msg
    assert f'{work}/m0/iter_2.pth' in msg and osp.isfile(work / 'm0/iter_2.pth')
    assert not osp.exists(work / 'bdl_state.json') or 'm0' not in json.load(open(work / 'bdl_state.json'))['stages']

    # the switch changes no stage setting: --resume is not refused, and both stages finish skipping iteration 3
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.resume = str(work), True
    cfg.train_cfg.non_finite_loss = 'skip'
    Runner.from_cfg(cfg).train()
    state = json.load(open(work / 'bdl_state.json'))['stages']
    assert list(state) == ['m0', 'k1/m0'] and all(s['status'] == 'done' for s in state.values())
    for stage in ('m0', 'k1/m0'):
        skips = json.load(open(work / stage / 'non_finite_skips.json'))
        assert skips['skipped'] == 1 and skips['last_iteration'] == 3 and skips['stage'] == stage
