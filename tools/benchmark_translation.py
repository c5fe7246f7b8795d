# Copyright (c) bdl_mm contributors.
"""Cost of F's training step (BDL Eq. 2): the perceptual step against the plain CycleGAN step, side by side.

    python tools/benchmark_translation.py [--size 128] [--batch-size 1] [--threads 2] [--repeats 7] [--warmup 1]
        [--update-order generators_first] [--variants mmagic,plain,perceptual,perceptual_unfolded]
        [--reference /tmp/bdl_765ef60] [--seg-config configs/_base_/models/deeplabv2_r101.py]
        [--base-channels 64] [--num-blocks 9] [--device cpu] [--amp] [--profile [--profile-steps 1]] [--json OUT.json]

Every variant is built from configs/_base_/models/perceptual_cycle_gan.py (release sizes: 9-block ResNet generators
with 64 filters, 3-layer PatchGANs, M = the full DeepLabV2-R101 with random weights) with the same initial weights
and trained on the same batch (random BGR images, ``--size`` square crops):

- ``mmagic``: MMagic's own ``CycleGAN.train_step`` (D update, then G update);
- ``plain``: ``PerceptualCycleGAN`` without the perceptual loss (``perceptual_loss=None``) in ``--update-order``;
- ``perceptual``: ``PerceptualCycleGAN`` as configured (perceptual loss on, M with folded BatchNorm, channels-last
  on the CPU);
- ``perceptual_unfolded``: the same with ``fold_bn=False, channels_last=False`` (M as it is stored);
- ``reference``: only with ``--reference PATH``: the ``PerceptualCycleGAN`` of another checkout (``PATH`` is its
  root, or the file), e.g. commit 765ef60 unpacked, which has MMagic's update order only.

Timing: each repeat runs one step of every variant back to back, the order rotated from repeat to repeat, after
``--warmup`` steps of each; the figures are the median over ``--repeats`` and, for the ratios, the median of the
per-repeat ratios (paired: robust to load changes on a shared machine), the ratio of the medians beside it. Wall
and process CPU time are both recorded; ``--clock cpu`` judges on CPU time, which on a machine shared with other
jobs counts the work of the step rather than the time it waited for a core (use it with ``--threads 1``: with more
threads, OpenMP's spin-waiting at barriers is CPU time too).
Targets (issue 14): perceptual / plain <= 1.40; perceptual / reference <= 0.92 (8 % faster than 765ef60).
The first step's losses of ``perceptual`` and ``perceptual_unfolded`` (same weights, same batch) are compared too.

``--profile``: after the timed repeats, ``--profile-steps`` more steps of ``perceptual`` under ``torch.profiler``
(CPU), their self CPU time split by phase: generator / discriminator forwards, M on the real images (no gradient),
M forward on the generated images, and every backward op under the phase whose forward made its autograd node
(matched by sequence number: G, D, M backward to its inputs), optimiser steps, image pool, data preprocessor; the
rest is loss arithmetic and bookkeeping. It states M's own share of the step: the perceptual overhead cannot fall
below ``1 + M / (step - M)`` without computing less through M.
"""
import argparse
import bisect
import contextlib
import copy
import importlib.util
import inspect
import json
import os
import os.path as osp
import statistics
import sys
import time
from unittest import mock

try:
    import _bootstrap  # noqa: F401
except ImportError:
    from tools import _bootstrap  # noqa: F401

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmagic.models.editors.cyclegan import CycleGAN  # noqa: E402
from mmagic.registry import MODELS as MMAGIC_MODELS  # noqa: E402
from mmagic.structures import DataSample  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MessageHub, MMLogger  # noqa: E402
from mmengine.optim import AmpOptimWrapper, OptimWrapper, OptimWrapperDict  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from bdl_mm.models.translators import PerceptualCycleGAN  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
KEYS = ['img_source', 'img_target']
VARIANTS = ('mmagic', 'plain', 'perceptual', 'perceptual_unfolded')
TARGET_OVERHEAD = 1.40
TARGET_VS_REFERENCE = 0.92
REFERENCE_FILE = 'bdl_mm/models/translators/perceptual_cycle_gan.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='F step: perceptual CycleGAN vs plain CycleGAN (and a reference)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--size', type=int, default=128, help='square crop size (release: 452)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--seg-config', default=osp.join(ROOT, 'configs/_base_/models/deeplabv2_r101.py'),
                        help='MMSeg config of M (its `model`)')
    parser.add_argument('--num-classes', type=int, default=None, help='default: from the M config')
    parser.add_argument('--update-order', default='generators_first',
                        choices=['generators_first', 'discriminators_first'])
    parser.add_argument('--variants', default=','.join(VARIANTS), help=f'comma-separated subset of {VARIANTS}')
    parser.add_argument('--reference', default=None,
                        help='root of another checkout (or its perceptual_cycle_gan.py) to time as `reference`')
    parser.add_argument('--batch-mode', default='split', choices=['split', 'joint', 'none'])
    parser.add_argument('--distance', default='mse_instance_norm', choices=['mse_instance_norm', 'l1'])
    parser.add_argument('--base-channels', type=int, default=64)
    parser.add_argument('--num-blocks', type=int, default=9)
    parser.add_argument('--amp', action='store_true', help='mixed precision (AmpOptimWrapper) for every variant')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--clock', default='wall', choices=['wall', 'cpu'],
                        help='time the ratios are judged on: wall, or the process CPU time (steadier on a machine '
                        'shared with other jobs, at --threads 1)')
    parser.add_argument('--profile', action='store_true',
                        help='then profile `perceptual` (torch.profiler, CPU only) and print its phases')
    parser.add_argument('--profile-steps', type=int, default=1)
    parser.add_argument('--json', default=None, help='also write the figures here')
    args = parser.parse_args(argv)
    unknown = set(args.variants.split(',')) - set(VARIANTS)
    if unknown:
        parser.error(f'unknown --variants {sorted(unknown)}; choose from {VARIANTS}')
    if args.profile and 'perceptual' not in args.variants.split(','):
        parser.error('--profile profiles the `perceptual` variant: keep it in --variants')
    if args.profile and args.device != 'cpu':
        parser.error('--profile splits CPU time: use it with --device cpu')
    if args.profile_steps < 1:
        parser.error(f'--profile-steps must be >= 1, got {args.profile_steps}')
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f'--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}')
    return args


def make_batch(n, size, seed=0):
    """A batch as PackInputs(keys=KEYS, data_keys=KEYS) + pseudo_collate give it (BGR uint8 images)."""
    rng = np.random.RandomState(seed)
    inputs, samples = [], []
    for _ in range(n):
        imgs = {k: torch.from_numpy(rng.randint(0, 256, (3, size, size), dtype=np.uint8)) for k in KEYS}
        sample = DataSample(metainfo={f'{k}_channel_order': 'bgr' for k in KEYS})
        sample.set_tensor_data(dict(imgs))
        inputs.append(imgs)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def optim(model, amp):
    wrapper = AmpOptimWrapper if amp else OptimWrapper

    def one(module):
        return wrapper(optimizer=torch.optim.Adam(module.parameters(), lr=2e-4, betas=(0.5, 0.999)))

    return OptimWrapperDict(generators=one(model.generators), discriminators=one(model.discriminators))


def load_reference(path):
    """The ``PerceptualCycleGAN`` class of another checkout, imported from its file without registering it."""
    file = path if path.endswith('.py') else osp.join(path, REFERENCE_FILE)
    if not osp.isfile(file):
        raise SystemExit(f'error: --reference {path}: no {REFERENCE_FILE} there')
    spec = importlib.util.spec_from_file_location('bdl_mm.models.translators._reference_perceptual_cycle_gan', file)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = 'bdl_mm.models.translators'  # relative imports resolve to this checkout's package
    # the class name is registered already (this checkout's): load the reference without registering it
    with mock.patch.object(MMAGIC_MODELS, 'register_module', lambda *a, **k: (lambda cls: cls)):
        spec.loader.exec_module(module)
    return module.PerceptualCycleGAN


def _init_nets(model):
    for nets in (model.generators, model.discriminators):  # CycleGAN.init_weights fails in MMagic 1.2.0
        for net in nets.values():
            net.init_weights()


def build_models(args):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/perceptual_cycle_gan.py')).model.to_dict()
    cfg.pop('type')
    cfg['generator'].update(base_channels=args.base_channels, num_blocks=args.num_blocks)
    cfg['discriminator'].update(base_channels=args.base_channels)
    cfg['update_order'] = args.update_order
    seg_model_cfg = Config.fromfile(args.seg_config).model.to_dict()
    num_classes = args.num_classes or seg_model_cfg.get('decode_head', {}).get('num_classes')
    seg = dict(config=seg_model_cfg, checkpoint=None, num_classes=num_classes)
    per = dict(cfg.pop('perceptual_loss'), batch_mode=args.batch_mode, distance=args.distance)
    cfg.pop('segmentor')
    plain_cfg = {k: v for k, v in cfg.items() if k != 'seg_input'}

    torch.manual_seed(args.seed)
    with DefaultScope.overwrite_default_scope('mmagic'):
        mm = CycleGAN(**{k: v for k, v in plain_cfg.items() if k != 'update_order'})
    _init_nets(mm)
    weights = mm.state_dict()
    models = {}
    wanted = args.variants.split(',')
    if 'mmagic' in wanted:
        models['mmagic'] = mm
    if 'plain' in wanted:
        models['plain'] = PerceptualCycleGAN(**plain_cfg, perceptual_loss=None)
    if 'perceptual' in wanted:
        models['perceptual'] = PerceptualCycleGAN(**cfg, segmentor=seg, perceptual_loss=per)
    if 'perceptual_unfolded' in wanted:
        models['perceptual_unfolded'] = PerceptualCycleGAN(
            **cfg, segmentor=seg, perceptual_loss=dict(per, fold_bn=False, channels_last=False))
    if args.reference:
        ref_cls = load_reference(args.reference)
        params = inspect.signature(ref_cls.__init__).parameters
        ref_cfg = {k: v for k, v in cfg.items() if k != 'update_order' or 'update_order' in params}
        known = ('lambda_per', 'lambda_per_recon', 'distance', 'batch_mode')  # the keys of 765ef60
        ref_per = {k: v for k, v in per.items() if k in known}
        try:
            models['reference'] = ref_cls(**ref_cfg, segmentor=seg, perceptual_loss=ref_per)
        except ValueError:  # a later reference that knows more keys
            models['reference'] = ref_cls(**ref_cfg, segmentor=seg, perceptual_loss=per)
    for name, model in models.items():
        if model is not mm:
            model.load_state_dict(weights)
        models[name] = model.to(args.device).train()
    # one M for every perceptual variant (random weights: each build draws its own)
    base = next((m for m in models.values() if getattr(m, 'segmentor', None) is not None), None)
    for model in models.values():
        if base is not None and getattr(model, 'segmentor', None) is not None and model is not base:
            model.segmentor.load_state_dict(base.segmentor.state_dict())
    return models


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def floats(log_vars):
    return {k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()}


def paired(times, a, b):
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


PHASE = 'bdl_phase::'
M_PHASES = ('M forward, real images (no grad)', 'M forward, generated images', 'M backward (to its inputs)')
BACKWARD_OF = {'G forward': 'G backward', 'D forward': 'D backward', 'M forward, generated images': M_PHASES[2]}


def profile_phases(model, optim_wrapper, data, steps=1):
    """Self CPU seconds per step by phase of ``steps`` train steps of ``model`` (a ``PerceptualCycleGAN``).

    Forward ops take the innermost phase label they ran under (set here by wrapping the model's networks and
    methods for the duration of the profile); a backward op (inside an autograd ``evaluate_function``) takes the
    backward phase of the forward op that made its autograd node. An op records the sequence number current at
    its start, so ops that make no node share it with the next op that does: the last op in time with a number is
    the one that made that node. Nodes no op recorded (``CopySlices`` and ``AsStridedBackward0`` of an in-place
    activation on a view, e.g. ReLU after an instance norm) take the phase of the nearest lower number. Gradient
    accumulation into ``.grad`` has no number (its own phase). With ``batch_mode='joint'`` M's single forward counts
    as 'generated images'.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    def labelled(fn, label):
        def run(*args, **kwargs):
            with record_function(PHASE + (label(*args, **kwargs) if callable(label) else label)):
                return fn(*args, **kwargs)
        return run

    patches = [(net, 'forward', 'G forward') for net in model.generators.values()]
    patches += [(net, 'forward', 'D forward') for net in model.discriminators.values()]
    patches += [(buf, 'query', 'image pool') for buf in model.image_buffers.values()]
    patches += [(model.data_preprocessor, 'forward', 'data preprocessor'),
                (model, 'seg_logits', lambda *a, **k: M_PHASES[1] if torch.is_grad_enabled() else M_PHASES[0])]
    for key in ('generators', 'discriminators'):
        patches += [(optim_wrapper[key].optimizer, 'step', 'optimiser steps'),
                    (optim_wrapper[key].optimizer, 'zero_grad', 'optimiser steps')]
    with contextlib.ExitStack() as stack:
        for obj, name, label in patches:
            stack.enter_context(mock.patch.object(obj, name, labelled(getattr(obj, name), label)))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                model.train_step(copy.deepcopy(data), optim_wrapper)
    events = sorted(prof.events(), key=lambda e: e.time_range.start)

    def chain(e):
        while e is not None:
            yield e
            e = e.cpu_parent

    def label_of(e):
        return next((a.name[len(PHASE):] for a in chain(e) if a.name.startswith(PHASE)), None)

    def engine_of(e):
        return next((a for a in chain(e) if a.name.startswith('autograd::engine::evaluate_function')), None)

    other = 'losses, bookkeeping (rest)'
    made_by = {}
    for e in events:
        if e.sequence_nr is not None and e.sequence_nr >= 0 and engine_of(e) is None:
            made_by[e.sequence_nr] = label_of(e) or other
    numbers = sorted(made_by)
    phases = {}
    for e in events:
        if e.name.startswith(PHASE):
            continue
        engine = engine_of(e)
        if engine is None:
            phase = label_of(e) or other
        elif engine.sequence_nr is None or engine.sequence_nr < 0:
            phase = 'gradient accumulation'
        else:
            forward = made_by.get(engine.sequence_nr)
            if forward is None:  # a node made inside an op (no op recorded its number): the op before it
                i = bisect.bisect_left(numbers, engine.sequence_nr)
                forward = made_by[numbers[i - 1]] if i else other
            phase = BACKWARD_OF.get(forward, f'{forward}: backward')
        phases[phase] = phases.get(phase, 0.) + e.self_cpu_time_total / 1e6 / steps
    total = sum(phases.values())
    m_s = sum(phases.get(p, 0.) for p in M_PHASES)
    return dict(step_s=total, phases=dict(sorted(phases.items(), key=lambda kv: -kv[1])), m_s=m_s,
                m_share=m_s / total if total else 0., overhead_floor=total / (total - m_s) if total > m_s else None)


def print_profile(prof, steps):
    print(f'profile of `perceptual` (torch.profiler, self CPU per step, {steps} step(s) after the timed ones): '
          f'{prof["step_s"]:.3f} s')
    for phase, sec in prof['phases'].items():
        print(f'  {phase:<40} {sec:>8.3f} s {sec / prof["step_s"] * 100:>6.1f} %')
    floor = prof['overhead_floor']
    print(f"M's own compute ({', '.join(M_PHASES)}): {prof['m_s']:.3f} s = {prof['m_share'] * 100:.1f} % of the "
          f'step; perceptual / plain cannot fall below {floor:.3f} without computing less through M'
          if floor else "M's own compute: the whole step")


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    MMLogger.get_instance('benchmark_translation', log_level='WARNING')  # no per-parameter init log of M
    MessageHub.get_current_instance().update_info('iter', 0)
    models = build_models(args)
    wrappers = {name: optim(m, args.amp) for name, m in models.items()}
    data = make_batch(args.batch_size, args.size, args.seed)
    names = list(models)

    clocks = {'wall': time.perf_counter, 'cpu': time.process_time}
    times = {clock: {name: [] for name in names} for clock in clocks}
    first_losses, peak = {}, {}
    for i in range(args.warmup + args.repeats):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:  # rotated: every variant runs first, last ... in turn
            batch = copy.deepcopy(data)  # the preprocessor changes the batch in place; not timed
            if args.device.startswith('cuda'):
                torch.cuda.reset_peak_memory_stats()
            sync(args.device)
            start = {clock: fn() for clock, fn in clocks.items()}
            log_vars = models[name].train_step(batch, wrappers[name])
            sync(args.device)
            stop = {clock: fn() for clock, fn in clocks.items()}
            if i == 0:
                first_losses[name] = floats(log_vars)
            if i >= args.warmup:
                for clock in clocks:
                    times[clock][name].append(stop[clock] - start[clock])
            if args.device.startswith('cuda'):
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated() / 2**20)

    judged = times[args.clock]
    med = {clock: {name: statistics.median(ts) for name, ts in times[clock].items()} for clock in clocks}
    base = 'plain' if 'plain' in judged else names[0]
    desc = (f'F step on {args.device}{" AMP" if args.amp else ""}, torch threads {torch.get_num_threads()}, crop '
            f'{args.size}x{args.size}, batch {args.batch_size}, generators {args.base_channels} ch / '
            f'{args.num_blocks} blocks, M {osp.basename(args.seg_config)}, update_order {args.update_order}, '
            f'batch_mode {args.batch_mode}; median of {args.repeats} paired repeats after {args.warmup} warm-up; '
            f'ratios on {args.clock} time')
    print(desc)
    print(f'{"variant":<20} {"wall s":>8} {"min":>7} {"max":>7} {"cpu s":>8} {f"/ {base} paired":>16} '
          f'{"/ medians":>10}' + (f' {"peak MiB":>9}' if peak else ''))
    rows = {}
    for name in names:
        ratio, pair = med[args.clock][name] / med[args.clock][base], paired(judged, name, base)
        rows[name] = dict(median_s=med['wall'][name], times_s=times['wall'][name], median_cpu_s=med['cpu'][name],
                          cpu_times_s=times['cpu'][name], ratio_to_base=ratio, paired_ratio_to_base=pair,
                          peak_mib=peak.get(name))
        wall = times['wall'][name]
        print(f'{name:<20} {med["wall"][name]:>8.3f} {min(wall):>7.3f} {max(wall):>7.3f} {med["cpu"][name]:>8.3f} '
              f'{pair:>16.3f} {ratio:>10.3f}' + (f' {peak[name]:>9.0f}' if peak else ''))
    med = med[args.clock]
    verdicts = {}
    if 'perceptual' in judged and 'plain' in judged:
        pair = paired(judged, 'perceptual', 'plain')
        verdicts['overhead'] = dict(paired=pair, of_medians=med['perceptual'] / med['plain'], target=TARGET_OVERHEAD,
                                    ok=pair <= TARGET_OVERHEAD)
        print(f'perceptual overhead, perceptual / plain: paired {pair:.3f} (target <= {TARGET_OVERHEAD:.2f}: '
              f'{"PASS" if pair <= TARGET_OVERHEAD else "FAIL"}), '
              f'ratio of medians {verdicts["overhead"]["of_medians"]:.3f}')
    for other in ('reference', 'perceptual_unfolded'):
        if 'perceptual' in judged and other in judged:
            pair = paired(judged, 'perceptual', other)
            line = (f'perceptual / {other}: paired {pair:.3f} ({(1 - pair) * 100:+.1f} % time saved), ratio of '
                    f'medians {med["perceptual"] / med[other]:.3f}')
            verdicts[f'vs_{other}'] = dict(paired=pair, of_medians=med['perceptual'] / med[other])
            if other == 'reference':
                verdicts['vs_reference'].update(target=TARGET_VS_REFERENCE, ok=pair <= TARGET_VS_REFERENCE)
                line += f' (target <= {TARGET_VS_REFERENCE:.2f}: {"PASS" if pair <= TARGET_VS_REFERENCE else "FAIL"})'
            print(line)
    if 'perceptual' in first_losses and 'perceptual_unfolded' in first_losses:
        a, b = first_losses['perceptual'], first_losses['perceptual_unfolded']
        diff = max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in b)
        verdicts['first_step_loss_max_rel_diff'] = diff
        print(f'first-step losses, perceptual vs perceptual_unfolded: max relative difference {diff:.2e} over '
              f'{len(b)} terms')
    prof = None
    if args.profile:
        prof = profile_phases(models['perceptual'], wrappers['perceptual'], data, args.profile_steps)
        print_profile(prof, args.profile_steps)
    if args.json:
        result = dict(description=desc, args=vars(args), threads=torch.get_num_threads(), variants=rows,
                      verdicts=verdicts, first_step_losses=first_losses, profile=prof)
        tmp = args.json + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.json)
    return dict(variants=rows, verdicts=verdicts, first_step_losses=first_losses, profile=prof)


if __name__ == '__main__':
    main()
    sys.exit(0)
