# Copyright (c) bdl_mm contributors.
"""PseudoLabelHook: when it labels, where it writes, and how it points the train set to the labels."""
import importlib.util
import json
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmseg.registry import HOOKS

from bdl_mm.apis.pseudo_label import generate_pseudo_labels
from bdl_mm.engine.hooks import PseudoLabelHook

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_spec = importlib.util.spec_from_file_location('benchmark_pseudo_label',
                                               osp.join(REPO, 'tools', 'benchmark_pseudo_label.py'))
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


class FakeUDASet:
    """Stands for the train UDADataset: only the attribute the hook sets."""

    def __init__(self):
        self.pseudo_label_dir = None


class FakeIterator:

    def __init__(self, dataloader):
        self.dataloader = dataloader
        self._epoch = 0


def make_runner(tmp_path, target_root, model):
    target = toy.toy_dataset_cfg(target_root, 24, 48)
    target['pipeline'].insert(2, dict(type='RandomFlip', prob=1.0))  # training augmentation: dropped for labelling
    cfg = Config(dict(train_dataloader=dict(dataset=dict(type='UDADataset', source=dict(), target=target))))
    dataloader = SimpleNamespace(dataset=FakeUDASet(), _iterator=None)
    loop = SimpleNamespace(dataloader=dataloader, dataloader_iterator=FakeIterator(dataloader))
    loop.dataloader_iterator._epoch = 3
    return SimpleNamespace(model=model, cfg=cfg, work_dir=str(tmp_path / 'work'), train_loop=loop, iter=0,
                           message_hub=MessageHub.get_instance('test_pseudo_label_hook'))


def read(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def test_arguments_checked():
    with pytest.raises(ValueError, match='at least one'):
        PseudoLabelHook()
    with pytest.raises(ValueError, match='unknown mode'):
        PseudoLabelHook(mode='median', before_train=True)
    with pytest.raises(ValueError, match='checkpoint is only used at before_train'):
        PseudoLabelHook(after_train=True, checkpoint='x.pth')
    hook = HOOKS.build(dict(type='PseudoLabelHook', iters=[10, 5, 10]))
    assert isinstance(hook, PseudoLabelHook) and hook.iters == [5, 10]


def test_events_write_folders_and_point_train_set(tmp_path):
    root = toy.make_toy_target(str(tmp_path / 'target'), 3, height=30, width=60)
    model = toy.build_tiny_segmentor(seed=2).train()
    runner = make_runner(tmp_path, root, model)
    hook = PseudoLabelHook(mode='global', threshold=0.8, before_train=True, iters=[5], after_train=True)

    hook.before_train(runner)
    first = osp.join(runner.work_dir, 'pseudo_labels', 'before_train')
    assert runner.train_loop.dataloader.dataset.pseudo_label_dir == first
    assert runner.train_loop.dataloader_iterator._epoch == 3  # iterator rebuilt, epoch kept
    assert model.training  # restored after labelling in eval mode
    with open(osp.join(first, 'summary.json')) as f:
        summary = json.load(f)
    assert summary['mode'] == 'global' and summary['threshold'] == 0.8 and summary['num_images'] == 3
    assert summary['image_size'] == [[24, 48]]
    assert runner.message_hub.get_info('pseudo_label_dir') == first

    # labels equal those of the API run directly (the hook dropped RandomFlip, which would mirror them)
    direct = str(tmp_path / 'direct')
    generate_pseudo_labels(model, dict(batch_size=1, dataset=toy.toy_dataset_cfg(root, 24, 48)), direct,
                           mode='global', threshold=0.8, progress=False)
    rel = 'aachen/aachen_000000_000019_leftImg8bit.png'
    np.testing.assert_array_equal(read(osp.join(first, rel)), read(osp.join(direct, rel)))

    runner.iter = 3  # after the 4th iteration: nothing
    hook.after_train_iter(runner, 3)
    assert not osp.exists(osp.join(runner.work_dir, 'pseudo_labels', 'iter_4'))
    with torch.no_grad():  # the model moved on
        model.decode_head.conv_seg.bias.add_(torch.linspace(-3, 3, 19))
    runner.iter = 4  # after the 5th
    hook.after_train_iter(runner, 4)
    fifth = osp.join(runner.work_dir, 'pseudo_labels', 'iter_5')
    assert runner.train_loop.dataloader.dataset.pseudo_label_dir == fifth
    assert not np.array_equal(read(osp.join(fifth, rel)), read(osp.join(first, rel)))

    hook.after_train(runner)
    last = osp.join(runner.work_dir, 'pseudo_labels', 'after_train')
    assert osp.exists(osp.join(last, 'summary.json'))
    assert runner.train_loop.dataloader.dataset.pseudo_label_dir == fifth  # not re-pointed at the end
    np.testing.assert_array_equal(read(osp.join(last, rel)), read(osp.join(fifth, rel)))


def test_before_train_with_previous_model_checkpoint(tmp_path):
    """Release practice: train from the initial weights, label with the previous round's model."""
    root = toy.make_toy_target(str(tmp_path / 'target'), 2, height=30, width=60)
    previous = toy.build_tiny_segmentor(seed=3)
    ckpt = str(tmp_path / 'previous.pth')
    torch.save(dict(state_dict={f'segmentor.{k}': v for k, v in previous.state_dict().items()}), ckpt)
    current = toy.build_tiny_segmentor(seed=4)
    runner = make_runner(tmp_path, root, current)
    hook = PseudoLabelHook(out_dir=str(tmp_path / 'pl'), before_train=True, checkpoint=ckpt)
    hook.before_train(runner)
    direct = str(tmp_path / 'direct')
    generate_pseudo_labels(previous, dict(batch_size=1, dataset=toy.toy_dataset_cfg(root, 24, 48)), direct,
                           progress=False)
    for rel in ('aachen/aachen_000000_000019_leftImg8bit.png', 'bochum/bochum_000001_000019_leftImg8bit.png'):
        np.testing.assert_array_equal(read(osp.join(tmp_path, 'pl', 'before_train', rel)),
                                      read(osp.join(direct, rel)))
    # the trained model itself is untouched
    for k, v in toy.build_tiny_segmentor(seed=4).state_dict().items():
        assert torch.equal(current.state_dict()[k], v)
