# Copyright (c) bdl_mm contributors.
"""Memory benchmark of the SSL step: peak RSS of ``generate_pseudo_labels`` on n and 4n target images.

    OMP_NUM_THREADS=1 python tools/benchmark_pseudo_label.py [--n 6] [--height 512] [--width 1024]
        [--mode class_median] [--work-dir DIR]

Each size runs in its own subprocess on a generated Cityscapes-like target (random images in
``leftImg8bit/train/<city>/<name>_leftImg8bit.png``) with a tiny MMSeg ``EncoderDecoder`` (19 classes), and reports
its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the RSS before the run (imports + model). The
acceptance: peak(4n) <= 1.2 x peak(n). For comparison the release keeps two float64 N x H x W arrays (label and
probability), 16 N H W bytes, printed as ``release arrays``.

The helpers :func:`make_toy_target`, :func:`tiny_segmentor_cfg` and :func:`toy_dataset_cfg` are also used by the
tests of the SSL step.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

CITYSCAPES_MEAN = [104.00698793, 116.66876762, 122.67891434]


def make_toy_target(root: str, n: int, height: int = 64, width: int = 128, seed: int = 0) -> str:
    """Write ``n`` random BGR images in the Cityscapes layout under ``root``; returns ``root``."""
    import cv2
    rng = np.random.default_rng(seed)
    for i in range(n):
        city = ('aachen', 'bochum', 'cologne')[i % 3]
        path = osp.join(root, 'leftImg8bit', 'train', city, f'{city}_{i:06d}_000019_leftImg8bit.png')
        os.makedirs(osp.dirname(path), exist_ok=True)
        # smooth random colour fields so the predictions vary over the image
        small = rng.integers(0, 256, size=(max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(path, img)
    return root


def toy_dataset_cfg(root: str, height: int = 64, width: int = 128) -> dict:
    """The target set as the release loads it (Resize to width x height, no labels)."""
    return dict(
        type='CityscapesDataset',
        data_root=root,
        data_prefix=dict(img_path='leftImg8bit/train'),
        serialize_data=False,  # a few images: skip mmengine's pickling (and its gc.collect)
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(width, height), keep_ratio=False),
            dict(type='PackSegInputs'),
        ])


def tiny_segmentor_cfg(num_classes: int = 19) -> dict:
    """A small MMSeg EncoderDecoder (ResNet-18 with 4 base channels + FCN head), DeepLab input normalisation."""
    return dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=CITYSCAPES_MEAN, std=[1, 1, 1], bgr_to_rgb=False,
                               pad_val=0, seg_pad_val=255),
        backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=4, out_indices=(3, ),
                      strides=(1, 2, 2, 2), norm_cfg=dict(type='BN', requires_grad=True)),
        decode_head=dict(type='FCNHead', in_channels=32, in_index=0, channels=8, num_convs=1, concat_input=False,
                         num_classes=num_classes, align_corners=True,
                         loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def build_tiny_segmentor(num_classes: int = 19, seed: int = 0, logit_scale: float = 20.0):
    """The tiny segmentor with random weights; ``logit_scale`` spreads the confidences over (1/C, 1)."""
    import torch
    from mmengine.config import ConfigDict
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    torch.manual_seed(seed)
    model = MODELS.build(ConfigDict(tiny_segmentor_cfg(num_classes)))
    with torch.no_grad():
        model.decode_head.conv_seg.weight.mul_(logit_scale)
    return model.eval()


def _worker(args) -> None:
    """One measured run (in a subprocess)."""
    import torch
    torch.set_num_threads(1)
    from bdl_mm.apis.pseudo_label import generate_pseudo_labels
    model = build_tiny_segmentor()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.time()
    summary = generate_pseudo_labels(model, dict(batch_size=1, num_workers=0,
                                                 dataset=toy_dataset_cfg(args.data, args.height, args.width)),
                                     args.out, mode=args.mode, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(n=summary['num_images'], rss_before_kb=before, peak_rss_kb=peak,
                          seconds=time.time() - start, kept_ratio=summary['kept_ratio'])))


def main() -> int:
    parser = argparse.ArgumentParser(description='peak RSS of generate_pseudo_labels on n and 4n images')
    parser.add_argument('--n', type=int, default=6)
    parser.add_argument('--height', type=int, default=512)
    parser.add_argument('--width', type=int, default=1024)
    parser.add_argument('--mode', default='class_median', choices=['class_median', 'global', 'soft'])
    parser.add_argument('--work-dir', default=None)
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--data', help=argparse.SUPPRESS)
    parser.add_argument('--out', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return 0

    work = args.work_dir or tempfile.mkdtemp(prefix='bench_pseudo_label_')
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    env['PYTHONPATH'] = repo + os.pathsep + env.get('PYTHONPATH', '')
    results = []
    for n in (args.n, 4 * args.n):
        data = make_toy_target(osp.join(work, f'data_{n}'), n, args.height, args.width)
        out = osp.join(work, f'labels_{n}')
        proc = subprocess.run([sys.executable, __file__, '--worker', '--data', data, '--out', out, '--mode', args.mode,
                               '--height', str(args.height), '--width', str(args.width)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        release_mb = 16 * n * args.height * args.width / 2**20
        print(f'n={n:4d} images {args.height}x{args.width} ({args.mode}): peak RSS {res["peak_rss_kb"] / 1024:.1f} MiB '
              f'(before the run {res["rss_before_kb"] / 1024:.1f} MiB, growth '
              f'{(res["peak_rss_kb"] - res["rss_before_kb"]) / 1024:.1f} MiB), {res["seconds"]:.1f} s; '
              f'release arrays would take {release_mb:.1f} MiB')
    ratio = results[1]['peak_rss_kb'] / results[0]['peak_rss_kb']
    print(f'peak RSS ratio 4n/n = {ratio:.3f} (target <= 1.2): {"PASS" if ratio <= 1.2 else "FAIL"}')
    print(f'work dir: {work}')
    return 0 if ratio <= 1.2 else 1


if __name__ == '__main__':
    sys.exit(main())
