# Copyright (c) bdl_mm contributors.
"""Memory benchmark of the SSL step: the memory ``generate_pseudo_labels`` adds, on n and 4n target images.

    OMP_NUM_THREADS=1 python tools/benchmark_pseudo_label.py [--n 6] [--height 512] [--width 1024]
        [--mode class_median] [--work-dir DIR]

Each size runs in its own subprocess on a generated Cityscapes-like target (random images in
``leftImg8bit/train/<city>/<name>_leftImg8bit.png``) with a tiny MMSeg ``EncoderDecoder`` (19 classes). What is
judged is the growth: peak minus baseline, where the baseline is the resident memory just before the call (imports
and model loaded) and the peak the highest resident memory during the call. On Linux the kernel's high-water mark
is reset right before the call (``/proc/self/clear_refs``) and read after it (``VmHWM``); elsewhere, or if that is
refused, a thread samples the resident memory every millisecond. The whole-process peak (``ru_maxrss``) is printed
for reference only: the imports alone (a few hundred MiB) would dilute any growth. The acceptance:
growth(4n) <= 1.2 x growth(n). For comparison the release keeps two float64 N x H x W arrays (label and
probability), 16 N H W bytes, printed as ``release arrays``.

Every run works in a fresh folder (``--work-dir DIR`` gets a new ``DIR/run_*`` each time): the pseudo-label step
skips labels that already exist, so a reused folder would measure nothing.

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
import threading
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


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


class _RssSampler(threading.Thread):
    """Highest resident memory seen while running (fallback where the high-water mark cannot be reset)."""

    def __init__(self, interval: float = 0.001):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _current_rss_kb())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self.join()
        return max(self.peak, _current_rss_kb())


def _current_rss_kb() -> int:
    try:
        return _status_kb('VmRSS')
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_peak_growth(func, *args, **kwargs):
    """Run ``func`` and return ``(its result, dict(baseline_kb, peak_kb, growth_kb, method))``: resident memory
    just before the call, the highest during it, and their difference."""
    import gc
    gc.collect()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak resident set size (VmHWM) to the current one
        method, sampler = 'VmHWM after clear_refs', None
    except OSError:
        method, sampler = 'sampled VmRSS', _RssSampler()
    baseline = _current_rss_kb()
    if sampler is not None:
        sampler.start()
    result = func(*args, **kwargs)
    peak = sampler.stop() if sampler is not None else _status_kb('VmHWM')
    return result, dict(baseline_kb=baseline, peak_kb=peak, growth_kb=peak - baseline, method=method)


def fresh_run_dir(work_dir=None) -> str:
    """A new, empty folder for one benchmark run: ``<work_dir>/run_*`` (a temporary folder without ``work_dir``)."""
    if work_dir is None:
        return tempfile.mkdtemp(prefix='bench_pseudo_label_')
    os.makedirs(work_dir, exist_ok=True)
    return tempfile.mkdtemp(prefix=time.strftime('run_%Y%m%d_%H%M%S_'), dir=work_dir)


def _worker(args) -> None:
    """One measured run (in a subprocess)."""
    import torch
    torch.set_num_threads(1)
    from bdl_mm.apis.pseudo_label import generate_pseudo_labels
    model = build_tiny_segmentor()
    if osp.exists(args.out):
        raise SystemExit(f'benchmark: {args.out} exists; every run needs a fresh folder')
    start = time.time()
    summary, mem = measure_peak_growth(
        generate_pseudo_labels, model,
        dict(batch_size=1, num_workers=0, dataset=toy_dataset_cfg(args.data, args.height, args.width)), args.out,
        mode=args.mode, progress=False)
    print(json.dumps(dict(n=summary['num_images'], seconds=time.time() - start, kept_ratio=summary['kept_ratio'],
                          process_peak_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, **mem)))


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

    work = fresh_run_dir(args.work_dir)
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
        if res['n'] != n:
            raise SystemExit(f'benchmark: labelled {res["n"]} images, expected {n}')
        results.append(res)
        release_mb = 16 * n * args.height * args.width / 2**20
        print(f'n={n:4d} images {args.height}x{args.width} ({args.mode}): growth {res["growth_kb"] / 1024:.1f} MiB '
              f'(peak {res["peak_kb"] / 1024:.1f} - baseline {res["baseline_kb"] / 1024:.1f} MiB, '
              f'{res["method"]}), {res["seconds"]:.1f} s; whole-process peak {res["process_peak_kb"] / 1024:.1f} MiB; '
              f'release arrays would take {release_mb:.1f} MiB')
    ratio = results[1]['growth_kb'] / max(results[0]['growth_kb'], 1)
    ok = ratio <= 1.2
    print(f'growth ratio 4n/n (peak minus baseline) = {ratio:.3f} (target <= 1.2): {"PASS" if ok else "FAIL"}')
    print(f'work dir: {work}')
    print(json.dumps(dict(work_dir=work, ratio=ratio, passed=ok, results=results)))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
