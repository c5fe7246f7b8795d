# Copyright (c) bdl_mm contributors.
"""Cost of one BDL training step (M + D_M, Eq. 1 and 3) against the same step written as a bare PyTorch loop.

    OMP_NUM_THREADS=1 python tools/benchmark.py [--config configs/_base_/models/bdl_deeplabv2_r101.py]
        [--schedule configs/_base_/schedules/deeplabv2_sgd_poly.py] [--depth 50] [--num-classes 19]
        [--source-size 1280 720] [--target-size 1024 512] [--pseudo] [--device cpu|cuda] [--amp]
        [--warmup 1] [--repeats 5] [--no-memory] [--json OUT.json]

Both variants run the same modules (M's backbone and decode head, D_M) on the same data (one random source image
with labels, one target image, optionally a target pseudo label):

- ``bdl``: ``BDLSegmentor.train_step`` with the optimiser wrappers built from the schedule config by MMEngine
  (data preprocessor, MMSeg decode-head loss and accuracy, OptimWrapperDict, log dict);
- ``bare``: the release's loop written plainly: normalise, forward, upsample, cross-entropy, backward; target
  forward, ``lambda_adv * BCE(D(softmax), source)`` (+ pseudo-label CE), backward, SGD/Adam steps; D on the
  detached predictions with the halved BCE terms; torch optimisers with the same parameter groups.

Time: median wall time per step over ``--repeats`` after ``--warmup`` steps, the two variants interleaved in one
process (so load on the machine hits both alike); the verdict uses the median of the per-pair ratios (step i of
each variant ran back to back), which is robust to load bursts on a shared machine; the ratio of the medians is
printed beside it. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` of
one step; on CPU each variant runs one step in a fresh subprocess and reports its peak resident set size (VmHWM)
minus the RSS before the step (``ru_maxrss`` where /proc is unavailable). Target: bdl <= 1.10 x bare.
"""
import argparse
import copy
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

import _bootstrap  # noqa: F401  (must come first: one-line error if the stack is missing)
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from bdl_mm.utils import enable_amp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TARGET_RATIO = 1.10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Time and peak memory of one BDL step (M + D_M) vs a bare PyTorch loop')
    p.add_argument('--config', default=osp.join(ROOT, 'configs/_base_/models/bdl_deeplabv2_r101.py'),
                   help='config whose `model` is a BDLSegmentor (a model base or an experiment config)')
    p.add_argument('--schedule', default=osp.join(ROOT, 'configs/_base_/schedules/deeplabv2_sgd_poly.py'),
                   help='config with the optim_wrapper (used when --config has none)')
    p.add_argument('--depth', type=int, help='override the backbone depth (e.g. 50 for a faster run)')
    p.add_argument('--num-classes', type=int, default=19)
    p.add_argument('--source-size', type=int, nargs=2, default=(1280, 720), metavar=('W', 'H'))
    p.add_argument('--target-size', type=int, nargs=2, default=(1024, 512), metavar=('W', 'H'))
    p.add_argument('--pseudo', action='store_true', help='give the target a pseudo label (adds the SSL term)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=['cpu', 'cuda'])
    p.add_argument('--amp', action='store_true', help='AmpOptimWrapper for BDL, autocast + GradScaler for bare')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    p.add_argument('--json', help='also write the results to this JSON file')
    p.add_argument('--memory-probe', choices=['bdl', 'bare'], help=argparse.SUPPRESS)  # internal: CPU subprocess
    args = p.parse_args(argv)
    if args.amp and args.device != 'cuda':
        p.error('--amp needs --device cuda (MMEngine\'s AmpOptimWrapper runs on GPUs only)')
    if args.repeats < 1 or args.warmup < 0:
        p.error(f'--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}')
    return args


class Bench:
    """The model, its two sets of optimisers and the data shared by both variants."""

    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        cfg = Config.fromfile(args.config)
        init_default_scope(cfg.get('default_scope', 'mmseg'))
        if cfg.get('model', {}).get('type') != 'BDLSegmentor':
            raise SystemExit(f'error: {args.config}: model.type must be BDLSegmentor, got {cfg.model.get("type")}')
        model_cfg = copy.deepcopy(cfg.model)
        model_cfg.segmentor.decode_head.num_classes = args.num_classes
        model_cfg.discriminator.in_channels = args.num_classes
        if args.depth is not None:
            model_cfg.segmentor.backbone.depth = args.depth
        dp = model_cfg.segmentor.data_preprocessor
        if dp.get('size') is None and dp.get('size_divisor') is None:
            # MMSeg's SegDataPreProcessor needs one of them in training (stack_batch asserts it)
            print(f'warning: {args.config}: segmentor.data_preprocessor has neither size nor size_divisor, which '
                  'MMSeg needs for training; benchmarking with size_divisor=1', file=sys.stderr)
            dp.size_divisor = 1
        optim_cfg = cfg.get('optim_wrapper') or Config.fromfile(args.schedule).optim_wrapper
        optim_cfg = copy.deepcopy(optim_cfg)
        if args.amp:
            enable_amp(optim_cfg)
        torch.manual_seed(args.seed)
        self.model = MODELS.build(model_cfg).to(self.device)
        self.model.train()
        self.wrappers = build_optim_wrapper(self.model, optim_cfg)
        # bare loop: torch optimisers over the same parameter groups (same lr multipliers, momentum, decay)
        self.bare_opts = {}
        for name, wrapper in self.wrappers.items():
            opt = wrapper.optimizer
            groups = [{k: v for k, v in g.items()} for g in opt.param_groups]
            self.bare_opts[name] = type(opt)(groups, **opt.defaults)
        self.scaler = torch.amp.GradScaler('cuda') if args.amp else None
        self.data = self._make_data()

    def _make_data(self):
        g = torch.Generator().manual_seed(self.args.seed)
        n_cls = self.args.num_classes

        def part(w, h, labelled):
            img = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
            ds = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
            if labelled:
                lbl = torch.randint(0, n_cls, (1, h, w), generator=g)
                lbl[:, :h // 10] = 255
                ds.gt_sem_seg = PixelData(data=lbl)
            return dict(inputs=[img], data_samples=[ds])

        return dict(source=part(*self.args.source_size, True), target=part(*self.args.target_size, self.args.pseudo))

    def sync(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize()

    # ---------------------------------------------------------------- the two variants
    def bdl_step(self, data):
        return self.model.train_step(data, self.wrappers)

    def bare_step(self, data):
        m = self.model
        seg, dis = m.segmentor, m.discriminator
        dev, amp = self.device, self.args.amp
        prep = seg.data_preprocessor
        align = seg.decode_head.align_corners
        opt_m, opt_d = self.bare_opts['segmentor'], self.bare_opts['discriminator']

        def backward(loss):
            (self.scaler.scale(loss) if amp else loss).backward()

        def step(opt):
            if amp:
                self.scaler.step(opt)
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)

        def logits_of(part):
            img = torch.stack(part['inputs']).to(dev).float()
            x = (img - prep.mean) / prep.std
            with torch.autocast(dev.type, enabled=amp):
                out = seg.decode_head(seg.backbone(x))
                return F.interpolate(out, size=x.shape[2:], mode='bilinear', align_corners=align)

        def bce(d_out, label):
            return F.binary_cross_entropy_with_logits(d_out, torch.full_like(d_out, label))

        src, tgt = data['source'], data['target']
        for p in dis.parameters():
            p.requires_grad_(False)
        up_s = logits_of(src)
        lbl_s = src['data_samples'][0].gt_sem_seg.data.to(dev).long()
        loss_s = F.cross_entropy(up_s.float(), lbl_s, ignore_index=255)
        backward(loss_s)
        up_s = up_s.detach()
        up_t = logits_of(tgt)
        with torch.autocast(dev.type, enabled=amp):
            loss_t = m.lambda_adv * bce(dis(F.softmax(up_t, dim=1)), m.source_label)
        if self.args.pseudo:
            lbl_t = tgt['data_samples'][0].gt_sem_seg.data.to(dev).long()
            loss_t = loss_t + m.lambda_ssl * F.cross_entropy(up_t.float(), lbl_t, ignore_index=255)
        backward(loss_t)
        step(opt_m)
        up_t = up_t.detach()
        for p in dis.parameters():
            p.requires_grad_(True)
        with torch.autocast(dev.type, enabled=amp):
            loss_d = bce(dis(F.softmax(up_s, dim=1)), m.source_label) / 2 + bce(
                dis(F.softmax(up_t, dim=1)), m.target_label) / 2
        backward(loss_d)
        step(opt_d)
        if amp:
            self.scaler.update()
        return dict(loss_s=loss_s.detach(), loss_t=loss_t.detach(), loss_d=loss_d.detach())

    def prepare(self):
        """A fresh copy of the batch (the preprocessor moves and pads the samples in place); not timed."""
        return copy.deepcopy(self.data)

    def run(self, variant, data=None):
        data = self.prepare() if data is None else data
        out = (self.bdl_step if variant == 'bdl' else self.bare_step)(data)
        self.sync()
        return out


def _rss_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise OSError('no VmRSS')


def _hwm_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise OSError('no VmHWM')


def memory_probe(args):
    """One step of one variant in this (fresh) process; prints JSON with the peak memory in bytes."""
    bench = Bench(args)
    variant = args.memory_probe
    if bench.device.type == 'cuda':
        bench.run(variant)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        bench.run(variant)
        peak = torch.cuda.max_memory_allocated()
        res = dict(peak=peak, step=peak - base, method='torch.cuda.max_memory_allocated')
    else:
        try:  # reset the high-water mark so that the model build does not count
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            before = _rss_bytes()
            bench.run(variant)
            peak = _hwm_bytes()
            method = 'VmHWM after clear_refs, first step in a fresh process'
        except OSError:
            before = _rss_bytes() if osp.exists('/proc/self/status') else 0
            bench.run(variant)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            method = 'ru_maxrss, first step in a fresh process'
        res = dict(peak=peak, step=peak - before, method=method)
    print('MEMORY_JSON ' + json.dumps(res), flush=True)


def measure_memory(args, variant):
    """Run :func:`memory_probe` for one variant in a fresh interpreter and return its JSON result."""
    argv = [sys.executable, osp.abspath(__file__), '--memory-probe', variant, '--config', args.config, '--schedule',
            args.schedule, '--num-classes', str(args.num_classes), '--source-size', *map(str, args.source_size),
            '--target-size', *map(str, args.target_size), '--device', args.device, '--seed', str(args.seed)]
    argv += (['--depth', str(args.depth)] if args.depth is not None else []) + (['--pseudo'] if args.pseudo else [])
    argv += ['--amp'] if args.amp else []
    proc = subprocess.run(argv, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith('MEMORY_JSON '):
            return json.loads(line[len('MEMORY_JSON '):])
    raise SystemExit(f'error: memory probe for {variant} failed (exit {proc.returncode}): {proc.stderr[-2000:]}')


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe(args)
        return
    bench = Bench(args)
    times = dict(bdl=[], bare=[])
    for _ in range(args.warmup):
        bench.run('bdl')
        bench.run('bare')
    for i in range(args.repeats):
        order = ('bdl', 'bare') if i % 2 == 0 else ('bare', 'bdl')  # alternate which goes first
        for variant in order:
            data = bench.prepare()
            t0 = time.perf_counter()
            bench.run(variant, data)
            times[variant].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = None if args.no_memory else {v: measure_memory(args, v) for v in ('bdl', 'bare')}

    backbone = bench.model.segmentor.backbone
    desc = (f'{type(backbone).__name__}' + (f'-{backbone.depth}' if hasattr(backbone, 'depth') else '') +
            f' + {type(bench.model.segmentor.decode_head).__name__}, {args.num_classes} classes; source '
            f'{args.source_size[0]}x{args.source_size[1]}, target {args.target_size[0]}x{args.target_size[1]}'
            f'{" + pseudo label" if args.pseudo else ""}; {args.device}'
            f'{" AMP" if args.amp else ""}, torch threads {torch.get_num_threads()}; median of {args.repeats} '
            f'after {args.warmup} warm-up')
    print(desc)
    print(f'{"variant":<8} {"median s/step":>14} {"min":>8} {"max":>8}' + (f' {"peak MiB":>10} {"step MiB":>10}'
                                                                            if mem else ''))
    for v in ('bdl', 'bare'):
        row = f'{v:<8} {med[v]:>14.3f} {min(times[v]):>8.3f} {max(times[v]):>8.3f}'
        if mem:
            row += f' {mem[v]["peak"] / 2**20:>10.1f} {mem[v]["step"] / 2**20:>10.1f}'
        print(row)
    ratio = med['bdl'] / med['bare']
    # steps i of the two variants ran back to back: their ratio cancels slow phases of a loaded machine
    paired = statistics.median(b / r for b, r in zip(times['bdl'], times['bare']))
    verdict = 'PASS' if paired <= TARGET_RATIO else 'FAIL'
    line = (f'time ratio bdl/bare: median of paired steps {paired:.3f} (target <= {TARGET_RATIO:.2f}: {verdict}), '
            f'ratio of medians {ratio:.3f}')
    if mem:
        mem_ratio = mem['bdl']['step'] / max(mem['bare']['step'], 1)
        line += f'; step-memory ratio = {mem_ratio:.3f} ({mem["bdl"]["method"]})'
    print(line)
    if args.json:
        result = dict(description=desc, args={k: v for k, v in vars(args).items() if k != 'memory_probe'},
                      times=times, median=med, ratio_of_medians=ratio, paired_ratio=paired, memory=mem,
                      target_ratio=TARGET_RATIO)
        tmp = args.json + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.json)


if __name__ == '__main__':
    main()
