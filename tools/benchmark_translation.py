# Copyright (c) bdl_mm contributors.
"""Cost of F's training step with the perceptual loss vs MMagic's plain CycleGAN step, on the same inputs.

    python tools/benchmark_translation.py [--device cpu] [--size 64] [--batch-size 1] [--repeats 5] [--warmup 1]
        [--seg-config configs/_base_/models/deeplabv2_r101.py] [--batch-modes split,joint,none] [--amp]
        [--base-channels 64] [--num-blocks 9] [--json out.json]

Both models use the release architecture (configs/_base_/models/perceptual_cycle_gan.py: 9-block ResNet
generators with 64 filters, 3-layer PatchGANs) and the same initial weights and batch; the perceptual model runs
M (default: the full DeepLabV2-R101, random weights) once per batch mode. Steps are timed side by side
(interleaved), the median of ``--repeats`` is reported with the ratio of medians to the plain step and the
median of the per-repeat ratios (robust to load changes on a shared machine). Target: ratio <= 1.6 on
the CPU at reduced size (``--size 64``); the full-size figure is ``--device cuda --size 452``.
"""
import argparse
import copy
import json
import os.path as osp
import statistics
import sys
import time

try:
    import _bootstrap  # noqa: F401
except ImportError:
    from tools import _bootstrap  # noqa: F401

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmagic.models.editors.cyclegan import CycleGAN  # noqa: E402
from mmagic.structures import DataSample  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from bdl_mm.models.translators import PerceptualCycleGAN  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
KEYS = ['img_source', 'img_target']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='PerceptualCycleGAN vs CycleGAN training-step cost')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--size', type=int, default=64, help='square crop size (release: 452)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--seg-config', default=osp.join(ROOT, 'configs/_base_/models/deeplabv2_r101.py'),
                        help='MMSeg config of M (its `model`)')
    parser.add_argument('--num-classes', type=int, default=None, help='default: from the M config')
    parser.add_argument('--batch-modes', default='split', help='comma-separated perceptual batch modes to time')
    parser.add_argument('--distance', default='mse_instance_norm', choices=['mse_instance_norm', 'l1'])
    parser.add_argument('--base-channels', type=int, default=64)
    parser.add_argument('--num-blocks', type=int, default=9)
    parser.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper) for both models')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--json', default=None, help='write the figures here')
    return parser.parse_args(argv)


def make_batch(n, size, seed=0):
    """A batch as PackInputs(keys=KEYS, data_keys=KEYS) + pseudo_collate give it (BGR uint8 images)."""
    rng = np.random.RandomState(seed)
    inputs, samples = [], []
    for _ in range(n):
        imgs = {k: torch.from_numpy(rng.randint(0, 256, (3, size, size), dtype=np.uint8)) for k in KEYS}
        sample = DataSample()
        sample.set_tensor_data(dict(imgs))
        inputs.append(imgs)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def optim(model, amp):
    wrapper = AmpOptimWrapper if amp else OptimWrapper

    def one(module):
        return wrapper(optimizer=torch.optim.Adam(module.parameters(), lr=2e-4, betas=(0.5, 0.999)))

    return OptimWrapperDict(generators=one(model.generators), discriminators=one(model.discriminators))


def timed_step(model, wrapper, data, device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.train_step(copy.deepcopy(data), wrapper)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    MessageHub.get_current_instance().update_info('iter', 0)
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/perceptual_cycle_gan.py')).model.to_dict()
    cfg.pop('type')
    cfg['generator'].update(base_channels=args.base_channels, num_blocks=args.num_blocks)
    plain_cfg = {k: v for k, v in cfg.items() if k not in ('segmentor', 'seg_input', 'perceptual_loss')}
    seg_model_cfg = Config.fromfile(args.seg_config).model.to_dict()
    num_classes = args.num_classes or seg_model_cfg.get('decode_head', {}).get('num_classes')

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmagic'):
        plain = CycleGAN(**plain_cfg)
    for nets in (plain.generators, plain.discriminators):  # CycleGAN.init_weights fails in MMagic 1.2.0
        for net in nets.values():
            net.init_weights()
    plain.to(args.device).train()
    models = {'cyclegan': plain}
    for mode in args.batch_modes.split(','):
        per_cfg = dict(cfg, segmentor=dict(config=seg_model_cfg, checkpoint=None, num_classes=num_classes),
                       perceptual_loss=dict(cfg['perceptual_loss'], batch_mode=mode, distance=args.distance))
        model = PerceptualCycleGAN(**per_cfg)
        model.load_state_dict(plain.state_dict())
        models[f'perceptual_{mode}'] = model.to(args.device).train()
    wrappers = {name: optim(m, args.amp) for name, m in models.items()}
    data = make_batch(args.batch_size, args.size)

    times = {name: [] for name in models}
    peak = {}
    for i in range(args.warmup + args.repeats):
        for name, model in models.items():  # interleaved: drifts of the machine hit every model alike
            if args.device.startswith('cuda'):
                torch.cuda.reset_peak_memory_stats()
            t = timed_step(model, wrappers[name], data, args.device)
            if i >= args.warmup:
                times[name].append(t)
            if args.device.startswith('cuda'):
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated() / 2**20)
    base = statistics.median(times['cyclegan'])
    result = dict(device=args.device, size=args.size, batch_size=args.batch_size, repeats=args.repeats,
                  amp=args.amp, threads=torch.get_num_threads(), seg_config=args.seg_config,
                  generator=dict(base_channels=args.base_channels, num_blocks=args.num_blocks), models={})
    print(f'device {args.device}, {args.size}x{args.size}, batch {args.batch_size}, threads '
          f'{torch.get_num_threads()}, M {osp.basename(args.seg_config)}, median of {args.repeats}')
    for name, ts in times.items():
        med = statistics.median(ts)
        # steps of one repeat ran back to back: their ratio is robust to load changes between repeats
        paired = statistics.median(t / b for t, b in zip(ts, times['cyclegan']))
        result['models'][name] = dict(median_s=med, ratio=med / base, paired_ratio=paired, times_s=ts,
                                      peak_mib=peak.get(name))
        mem = f', peak {peak[name]:.0f} MiB' if name in peak else ''
        print(f'  {name:22s} {med * 1000:9.1f} ms/step  x{med / base:.2f} (median of paired ratios '
              f'x{paired:.2f}){mem}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
