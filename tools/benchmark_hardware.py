"""Hardware table: what each stage kind of an Algorithm-1 config needs at the real sizes.

    python tools/benchmark_hardware.py configs/bdl_gta5.py [CONFIG ...] [--kinds source_only,ssl_adaptation,...]
        [--device cpu|cuda] [--f-batch 1] [--json OUT.json] [--estimate TFLOPS]
    python tools/benchmark_hardware.py CONFIG ... --from-json OUT.json --estimate TFLOPS

Every stage kind is measured in a fresh process, on the model, optimisers and input sizes its stage config (the one
the BDL loop builds, ``StageConfigBuilder``) gives it, with random data:

- ``source_only``, ``adaptation``, ``ssl_adaptation``: one training step of M (+ D_M), the batch of the config at
  the size of its ``Resize`` (GTA5 1280x720, SYNTHIA 1280x760, Cityscapes 1024x512), pseudo labels for SSL;
- ``translation``: one step of F (the perceptual CycleGAN with M(k-1)) on ``--f-batch`` 452x452 crops (default 1:
  one GPU's share of the release's batch of 4 on 4 GPUs; activations grow with the batch);
- ``translate``: F's generator on one source image at F's training width (S' = F(S));
- ``pseudo_label``: M's class probabilities of one target image (an SSL round).

For each: ``flops`` (``torch.utils.flop_counter``: forward and backward, one step or image), ``alloc_peak_gib``
(the peak of the tensors alive during the step, by the tensor accounting of
``torch.distributed._tools.mem_tracker.MemTracker``: parameters,
gradients, optimiser state, activations and temporaries; this is what a GPU's allocator must hold, give or take
its caching and cuDNN workspaces), ``process_peak_gib`` (the process's peak resident memory, VmHWM, model
building included), ``seconds`` (CPU seconds of the first step, ``time.process_time``; on CUDA the mean wall time of
``--repeat`` steps after a warm-up step), and for the training kinds ``checkpoint_mib``: the size of a checkpoint
(weights, optimiser state; F's with its two image pools full, as ``ImagePoolCheckpointHook`` saves them). FLOPs and
memory are measured on the second step, which holds the optimiser state. ``docs/benchmarks.md`` turns these into the
hardware table.

``--estimate TFLOPS``: the whole plan's FLOPs (each kind's FLOPs per step or image x its count at the release's
schedule: M's iterations, F's epochs x max(#source, #target) images, one image per source or target image for S'
and pseudo labels, with the released data sets' sizes) and the GPU-hours they take at that sustained throughput per
GPU, on 1, 4 and 8 GPUs with ideal scaling. Evaluation and data loading are left out.
Records measured with ``--device cuda`` also give the whole plan's hours at their measured step times on that GPU.
"""
import argparse
import copy
import io
import json
import os.path as osp
import subprocess
import sys
import tempfile
import time

try:
    import _bootstrap  # noqa: F401  (must come first: one-line error if the stack is missing)
except ImportError:  # imported as a module (tests)
    from tools import _bootstrap  # noqa: F401
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from bdl_mm.engine.stage_configs import StageConfigBuilder
from bdl_mm.structures.plan import build_plan

KINDS = ('source_only', 'adaptation', 'ssl_adaptation', 'translation', 'translate', 'pseudo_label')
GIB = 2**30
# images of the released data sets (docs/user_guides/data.md)
DATASET_IMAGES = dict(GTA5Dataset=24966, SynthiaDataset=9400, CityscapesDataset=2975)


def schedule(config):
    """Work units of the config's whole plan at the release's schedule: per stage kind, how many steps or images,
    from the stage configs (M's max_iters, F's epochs x max(#source, #target) images) and the data sets' sizes."""
    configs, plan = stage_configs(config)
    source = DATASET_IMAGES[configs.cfg.train_dataloader.dataset.source.type]
    target = DATASET_IMAGES['CityscapesDataset']
    units = {}
    for stage in plan:
        if stage.kind in ('source_only', 'adaptation', 'ssl_adaptation'):
            n = configs.m_stage_cfg(stage).train_cfg.max_iters
        elif stage.kind == 'translation':
            if configs.translation_baseline(stage) is not None:
                continue
            n = configs.translation_cfg(stage).train_cfg.max_epochs * max(source, target)  # images (batch 1 each)
        elif stage.kind == 'translate':
            n = source
        elif stage.kind == 'pseudo_label':
            n = target
        else:
            continue
        units[stage.kind] = units.get(stage.kind, 0) + n
    return units


def estimate(records, throughput_tflops):
    """GPU-hours of each config's whole plan: its measured FLOPs per step or image x the schedule's count, at the
    assumed sustained throughput, on 1, 4 and 8 GPUs (ideal scaling: every stage splits its work evenly)."""
    rows, timed = {}, {}
    for rec in records:
        if 'flops' not in rec:
            continue
        per_unit = rec['flops'] / rec.get('batch', 1)  # F: FLOPs per image (measured at --f-batch)
        rows.setdefault(rec['config'], {})[rec['kind']] = per_unit
        if rec.get('device') == 'cuda':  # wall seconds per step or image on the GPU that measured them
            timed.setdefault(rec['config'], {})[rec['kind']] = rec['seconds'] / rec.get('batch', 1)
    out = {}
    for config, flops in rows.items():
        units = schedule(config)
        total = sum(flops[k] * n for k, n in units.items() if k in flops)
        hours = total / (throughput_tflops * 1e12) / 3600
        out[config] = dict(pflop=round(total / 1e15, 1), missing=[k for k in units if k not in flops],
                           gpu_hours={g: round(hours / g, 1) for g in (1, 4, 8)}, units=units)
        secs = timed.get(config, {})
        if secs and all(k in secs for k in units):
            # measured: the GPU's own step times x the schedule (one GPU; data loading and evaluation left out)
            out[config]['measured_gpu_hours'] = round(sum(secs[k] * n for k, n in units.items()) / 3600, 1)
            out[config]['measured_hours_by_kind'] = {k: round(secs[k] * n / 3600, 2) for k, n in units.items()}
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Memory, FLOPs, time and checkpoint size per stage kind at the real sizes')
    p.add_argument('configs', nargs='+', help='Algorithm-1 configs (configs/bdl_*.py)')
    p.add_argument('--kinds', default=','.join(KINDS), help=f'comma-separated subset of {",".join(KINDS)}')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=['cpu', 'cuda'])
    p.add_argument('--f-batch', type=int, default=1,
                   help="F's batch per process (default 1: one GPU's share of the release's batch of 4 on 4 GPUs)")
    p.add_argument('--repeat', type=int, default=1,
                   help='on CUDA: time the mean of this many steps after a warm-up (default 1)')
    p.add_argument('--json', help='write every measurement to this file (a list of records)')
    p.add_argument('--estimate', metavar='TFLOPS', type=float,
                   help='also estimate the GPU-hours of each whole plan at this sustained throughput per GPU')
    p.add_argument('--from-json', help='estimate from the records of an earlier --json run (measures nothing)')
    p.add_argument('--probe', help=argparse.SUPPRESS)  # internal: measure one kind of one config in this process
    args = p.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(',') if k.strip()]
    bad = [k for k in args.kinds if k not in KINDS]
    if bad:
        p.error(f'--kinds: unknown {", ".join(bad)}; known: {", ".join(KINDS)}')
    return args


# ------------------------------------------------------------------ what the loop would build
def stage_configs(config, work_dir='.'):
    """The loop's stage configs of ``config`` (``work_dir``: where F's M checkpoint is written for F's kinds)."""
    cfg = Config.fromfile(config)
    keys = ('K', 'N', 'stages', 'use_translation', 'use_ssl', 'perceptual', 'm_init', 'source_only_checkpoint')
    plan = build_plan({k: cfg.train_cfg[k] for k in keys if k in cfg.train_cfg})
    return StageConfigBuilder(cfg, plan, work_dir, adversarial=cfg.train_cfg.get('adversarial', True)), plan


def first_stage(plan, kind):
    for stage in plan:
        if stage.kind == kind:
            return stage
    return None


def resize_scale(pipeline):
    for t in pipeline:
        if t['type'].split('.')[-1] == 'Resize':
            return tuple(t['scale'])
    raise SystemExit('error: no Resize in the pipeline: cannot tell the input size')


def seg_part(w, h, n, num_classes, labelled, device):
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
        ds = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        if labelled:
            ds.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        samples.append(ds)
    return dict(inputs=inputs, data_samples=samples)


def m_step_setup(configs, plan, kind, device):
    """M (+ D_M) as the stage builds it, its optimisers, and one batch of the stage's data at the real size."""
    stage = first_stage(plan, kind)
    cfg = configs.m_stage_cfg(stage, pseudo_label_dir='pseudo' if kind == 'ssl_adaptation' else None)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model).to(device).train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    n = int(cfg.train_dataloader.get('batch_size', 1))
    classes = cfg.model.segmentor.decode_head.num_classes
    ds = cfg.train_dataloader.dataset
    if kind == 'source_only':
        data = seg_part(*resize_scale(ds.pipeline), n, classes, True, device)
    else:
        data = dict(source=seg_part(*resize_scale(ds.source.pipeline), n, classes, True, device),
                    target=seg_part(*resize_scale(ds.target.pipeline), n, classes, kind == 'ssl_adaptation', device))
    return model, optim, lambda: model.train_step(copy.deepcopy(data), optim)


def f_setup(configs, plan, device, f_batch=1):
    """F as the translation stage builds it, with M(k-1) from a checkpoint of the config's M."""
    stage = first_stage(plan, 'translation')
    if stage is None or configs.translation_baseline(stage) is not None:
        return None
    m_cfg = configs.m_stage_cfg(first_stage(plan, 'source_only'))
    init_default_scope('mmseg')
    m_ckpt = osp.join(configs.work_dir, 'm.pth')
    torch.save(dict(state_dict=MODELS.build(m_cfg.model).segmentor.state_dict()), m_ckpt)
    cfg = configs.translation_cfg(stage, m_checkpoint=m_ckpt)
    from mmagic.registry import MODELS as MMAGIC_MODELS
    from mmagic.structures import DataSample
    init_default_scope('mmagic')
    model = MMAGIC_MODELS.build(cfg.model).to(device).train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    keys = ('img_source', 'img_target')
    crop = next(t['crop_size'] for t in cfg.train_dataloader.dataset.pipeline if t['type'].endswith('Crop'))
    width = next(t['width'] for t in cfg.train_dataloader.dataset.pipeline if t['type'].endswith('ScaleWidth'))
    n = f_batch
    inputs, samples = [], []
    for _ in range(n):
        imgs = {k: torch.randint(0, 256, (3, crop[0], crop[1]), dtype=torch.uint8) for k in keys}
        sample = DataSample(metainfo={f'{k}_channel_order': 'bgr' for k in keys})
        sample.set_tensor_data(dict(imgs))
        inputs.append(imgs)
        samples.append(sample)
    data = dict(inputs=inputs, data_samples=samples)
    MessageHub.get_current_instance().update_info('iter', 0)
    return model, optim, (lambda: model.train_step(copy.deepcopy(data), optim)), width, tuple(crop)


def checkpoint_bytes(model, optim, pools=None):
    buf = io.BytesIO()
    torch.save(dict(state_dict=model.state_dict(), optimizer=optim.state_dict(), image_pools=pools), buf)
    return buf.tell()


def vm_hwm_gib():
    try:
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def tensor_peak_tracker():
    """MemTracker's peak of the live tensors (every allocation through the dispatcher: activations, gradients,
    optimiser state, temporaries), without its per-module statistics: those refuse a module called twice in one
    step (M runs on the source, then on the target) and hook every parameter, frozen ones included."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class TensorPeak(MemTracker):
        def _pre_fw_hook(self, module, inputs):
            pass

        def _post_fw_hook(self, module, inputs, outputs):
            pass

        def _pre_bw_hook(self, module, args):
            pass

        def _post_bw_hook(self, module, args):
            pass

    return TensorPeak()


def optimizers(optim):
    return [w.optimizer for w in optim.values()] if hasattr(optim, 'values') else [optim.optimizer]


def measure(fn, device, model=None, optims=(), repeat=1):
    """A timed call (the first: it also creates the optimiser state), then one under the FLOP counter and the
    tensor tracker, which so sees the optimiser state that every later step holds. On CUDA: a warm-up call, then
    the mean wall time of ``repeat`` calls."""
    from torch.utils.flop_counter import FlopCounterMode
    if device == 'cuda':
        fn()  # warm-up (cuDNN autotuning, allocator)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) / repeat
        torch.cuda.reset_peak_memory_stats()
    else:
        t0 = time.process_time()
        fn()
        seconds = time.process_time() - t0
    tracker = tensor_peak_tracker()
    if model is not None:
        tracker.track_external(model, *optims)
    flops = FlopCounterMode(display=False)
    with tracker, flops:
        fn()
    peak = tracker.get_tracker_snapshot('peak')
    alloc = max(d.get('Total', 0) for d in peak.values()) if peak else 0
    out = dict(seconds=round(seconds, 4 if device == 'cuda' else 2), flops=flops.get_total_flops(),
               alloc_peak_gib=round(alloc / GIB, 3))
    if device == 'cuda':
        out['cuda_max_allocated_gib'] = round(torch.cuda.max_memory_allocated() / GIB, 3)
    return out


def probe(config, kind, device, f_batch=1, repeat=1):
    from mmengine.registry import DefaultScope
    # the probe sets mmseg's and mmagic's default scopes; the caller's comes back after it
    with tempfile.TemporaryDirectory(prefix='bdl_hw_') as work_dir, DefaultScope.overwrite_default_scope('mmseg'):
        return _probe(config, kind, device, f_batch, work_dir, repeat)


def _probe(config, kind, device, f_batch, work_dir, repeat=1):
    configs, plan = stage_configs(config, work_dir)
    torch.manual_seed(0)
    rec = dict(config=config, kind=kind, device=device)
    if first_stage(plan, kind) is None:
        return dict(rec, skipped='not in this plan')
    if kind in ('source_only', 'adaptation', 'ssl_adaptation'):
        model, optim, step = m_step_setup(configs, plan, kind, device)
        rec.update(measure(step, device, model, optimizers(optim), repeat))
        rec['checkpoint_mib'] = round(checkpoint_bytes(model, optim) / 2**20, 1)
    elif kind == 'translation':
        f = f_setup(configs, plan, device, f_batch)
        if f is None:
            return dict(rec, skipped='a translation baseline: nothing is trained')
        rec['batch'] = f_batch
        model, optim, step, _, crop = f
        rec.update(measure(step, device, model, optimizers(optim), repeat))
        pools = {}
        for domain, buf in (getattr(model, 'image_buffers', None) or {}).items():
            pools[domain] = [torch.zeros(3, *crop) for _ in range(buf.buffer_size)]  # full pools of F's crops
        rec['checkpoint_mib'] = round(checkpoint_bytes(model, optim, pools) / 2**20, 1)
        rec['image_pool_images'] = {d: len(v) for d, v in pools.items()}
    elif kind == 'translate':
        f = f_setup(configs, plan, device)
        if f is None:  # FDA / Reinhard: per-image numpy work, measured by the rehearsal's stage time
            return dict(rec, skipped='a translation baseline: see the dress rehearsal')
        model, _, _, width, _ = f
        src = configs.cfg.train_dataloader.dataset.source
        w, h = width, round(width * {'GTA5Dataset': 1052 / 1914, 'SynthiaDataset': 760 / 1280}.get(src.type, 0.5))
        gen = model.generators[model._default_domain]  # as apis/translate.py applies F
        gen.eval()
        x = torch.rand(1, 3, h // 4 * 4, w, device=device) * 2 - 1
        with torch.no_grad():
            rec.update(measure(lambda: gen(x), device, repeat=repeat))
        rec['image_size'] = [w, h]
    elif kind == 'pseudo_label':
        m_cfg = configs.m_stage_cfg(first_stage(plan, 'source_only'))
        init_default_scope('mmseg')
        seg = MODELS.build(m_cfg.model).segmentor.to(device).eval()
        w, h = resize_scale(configs.cfg.train_dataloader.dataset.target.pipeline)
        batch = seg_part(w, h, 1, 19, False, device)
        with torch.no_grad():
            def fn():
                data = seg.data_preprocessor(copy.deepcopy(batch), False)
                return seg.encode_decode(data['inputs'], [s.metainfo for s in data['data_samples']]).softmax(1)
            rec.update(measure(fn, device, repeat=repeat))
        rec['image_size'] = [w, h]
    rec['process_peak_gib'] = round(vm_hwm_gib(), 2)
    return rec


def main(argv=None):
    args = parse_args(argv)
    if args.probe:
        config, kind = args.probe.split('::')
        print('RESULT ' + json.dumps(probe(config, kind, args.device, args.f_batch, args.repeat)), flush=True)
        return
    if args.from_json:
        records = json.load(open(args.from_json))
        print_estimate(records, args.estimate or 25.0)
        return
    records = []
    for config in args.configs:
        for kind in args.kinds:
            cmd = [sys.executable, osp.abspath(__file__), config, '--device', args.device, '--f-batch',
                   str(args.f_batch), '--repeat', str(args.repeat), '--probe',
                   f'{config}::{kind}']
            out = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith('RESULT ')]
            if out.returncode != 0 or not lines:
                tail = (out.stderr.strip().splitlines() or ['no output'])[-1]
                raise SystemExit(f'error: {config} {kind}: {tail}')
            rec = json.loads(lines[-1][len('RESULT '):])
            records.append(rec)
            if 'skipped' in rec:
                print(f'{config:45s} {kind:15s} skipped: {rec["skipped"]}', flush=True)
            else:
                print(f'{config:45s} {kind:15s} {rec["flops"] / 1e12:7.3f} TFLOP  alloc peak '
                      f'{rec["alloc_peak_gib"]:6.2f} GiB  process peak {rec["process_peak_gib"]:6.2f} GiB  '
                      f'{rec["seconds"]:7.1f} s' + (f'  checkpoint {rec["checkpoint_mib"]:.0f} MiB'
                                                    if 'checkpoint_mib' in rec else ''), flush=True)
            if args.json:
                with open(args.json, 'w') as f:
                    json.dump(records, f, indent=1)
    if args.estimate:
        print_estimate(records, args.estimate)


def print_estimate(records, throughput):
    for config, e in estimate(records, throughput).items():
        if e['missing']:  # a part of the plan would count as free: no hours rather than too few
            print(f'{config}: no estimate, stage kinds not measured: {", ".join(e["missing"])} '
                  f'(--kinds {",".join(e["missing"])})')
            continue
        print(f'{config}: {e["pflop"]} PFLOP for the whole plan; at {throughput} TFLOP/s per GPU: '
              + ', '.join(f'{h} h on {g} GPU{"s" if g > 1 else ""}' for g, h in e['gpu_hours'].items()))
        if 'measured_gpu_hours' in e:
            print(f'{config}: at the measured CUDA step times, {e["measured_gpu_hours"]} h on that one GPU ('
                  + ', '.join(f'{k} {h} h' for k, h in e['measured_hours_by_kind'].items()) + ')')


if __name__ == '__main__':
    main()
