"""Measure the domain gap of the toy data: a source-only model vs a target-trained model of the same size.

Makes the toy data (``tools/make_toy_data.py``) unless ``--data`` points to it, converts it with the real converters,
trains two identical small MMSeg models (FCN head on a narrow ResNet-18, output stride 8) with MMEngine's runner, one
on the toy GTA5 train set and one on the toy Cityscapes train set (with its labels), and evaluates both on the toy
Cityscapes val set with ``UDAIoUMetric`` at full label resolution. Input format as the release (BGR 0-255 minus the
DeepLabV2 mean, fixed resize to the release sizes scaled down: source 256x144, target 256x128)::

    python tools/toy_domain_gap.py --work-dir work_dirs/toy_gap [--iters 300] [--out gap.json]

A few minutes on 2 CPU cores.
"""
import argparse
import json
import logging
import math
import os
import os.path as osp
import subprocess
import sys
import time

import _bootstrap  # noqa: F401  (must come first: one-line error if the stack is missing)
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

TOOLS = osp.dirname(osp.abspath(__file__))
MEAN = [104.00698793, 116.66876762, 122.67891434]
SOURCE_SCALE = (256, 144)  # 1280x720 / 5
TARGET_SCALE = (256, 128)  # 1024x512 / 4


def small_model(width=16):
    """FCN on a narrow ResNet-18 (output stride 8); the same model for both runs."""
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=MEAN, std=[1.0, 1.0, 1.0], bgr_to_rgb=False,
                               pad_val=0, seg_pad_val=255, size_divisor=8),
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=width, base_channels=width, num_stages=4,
                      strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), out_indices=(3, ), norm_cfg=norm_cfg,
                      contract_dilation=True),
        decode_head=dict(type='FCNHead', in_channels=8 * width, channels=4 * width, num_convs=2, concat_input=True,
                         dropout_ratio=0.1, num_classes=19, norm_cfg=norm_cfg, align_corners=True,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def train_pipeline(scale):
    return [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='Resize', scale=scale, keep_ratio=False), dict(type='PackSegInputs')]


def build_cfg(name, train_dataset, data_root, work_dir, iters, batch_size, lr, seed):
    val_dataset = dict(
        type='CityscapesDataset', data_root=osp.join(data_root, 'cityscapes'),
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=TARGET_SCALE, keep_ratio=False),
                  dict(type='LoadAnnotations'), dict(type='PackSegInputs')])
    return Config(dict(
        default_scope='mmseg',
        work_dir=osp.join(work_dir, name),
        experiment_name=name,
        model=small_model(),
        train_dataloader=dict(batch_size=batch_size, num_workers=0,
                              sampler=dict(type='InfiniteSampler', shuffle=True), dataset=train_dataset),
        val_dataloader=dict(batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                            dataset=val_dataset),
        val_evaluator=dict(type='UDAIoUMetric'),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1, val_begin=iters + 1),
        val_cfg=dict(type='ValLoop'),
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=lr, weight_decay=1e-4)),
        param_scheduler=[dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=iters, by_epoch=False)],
        default_hooks=dict(timer=dict(type='IterTimerHook'),
                           logger=dict(type='LoggerHook', interval=max(iters // 5, 1), log_metric_by_epoch=False),
                           param_scheduler=dict(type='ParamSchedulerHook'),
                           checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=iters, save_last=True)),
        env_cfg=dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                     dist_cfg=dict(backend='nccl')),
        log_processor=dict(by_epoch=False),
        log_level='WARNING',
        randomness=dict(seed=seed),
    ))


def train_and_evaluate(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.val()


def prepare_data(args):
    data_root = args.data or osp.join(args.work_dir, 'data')
    if not args.data:
        subprocess.run([sys.executable, osp.join(TOOLS, 'make_toy_data.py'), data_root, '--seed', str(args.seed)],
                       check=True)
    for tool, sub in (('gta5.py', 'gta5'), ('cityscapes.py', 'cityscapes')):
        subprocess.run([sys.executable, osp.join(TOOLS, 'dataset_converters', tool), osp.join(data_root, sub)],
                       check=True, stdout=subprocess.DEVNULL)
    return data_root


def parse_args():
    parser = argparse.ArgumentParser(description='Source-only vs target-trained model on the toy target val set')
    parser.add_argument('--work-dir', default='work_dirs/toy_domain_gap')
    parser.add_argument('--data', help='existing toy data root (made with tools/make_toy_data.py); made if absent')
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the results as JSON to this file')
    return parser.parse_args()


def main():
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    data_root = prepare_data(args)
    datasets = {
        'source_only': dict(type='GTA5Dataset', data_root=osp.join(data_root, 'gta5'), ann_file='train.txt',
                            pipeline=train_pipeline(SOURCE_SCALE)),
        'target_trained': dict(type='CityscapesDataset', data_root=osp.join(data_root, 'cityscapes'),
                               data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
                               pipeline=train_pipeline(TARGET_SCALE)),
    }
    results = dict(iters=args.iters, batch_size=args.batch_size, lr=args.lr, seed=args.seed, data=data_root)
    for name, dataset in datasets.items():
        start = time.time()
        cfg = build_cfg(name, dataset, data_root, args.work_dir, args.iters, args.batch_size, args.lr, args.seed)
        metrics = train_and_evaluate(cfg)
        # NaN (a class in neither labels nor predictions) is written as null
        results[name] = {k: None if math.isnan(float(v)) else float(v) for k, v in metrics.items()}
        results[name]['seconds'] = round(time.time() - start, 1)
        print_log(f'{name}: mIoU {metrics["mIoU"]:.2f} ({results[name]["seconds"]} s)', logger='current',
                  level=logging.WARNING)
    results['gap_mIoU'] = round(results['target_trained']['mIoU'] - results['source_only']['mIoU'], 2)
    print(f'toy target val mIoU: source-only {results["source_only"]["mIoU"]:.2f}, target-trained '
          f'{results["target_trained"]["mIoU"]:.2f}, gap {results["gap_mIoU"]:.2f} points')
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
