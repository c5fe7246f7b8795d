"""What a plan will write to its work dir, and a warning when the free space may not hold it.

The figures are those of the hardware table (``tools/benchmark_hardware.py``, ``docs/benchmarks.md``), computed here
from the run's own models and data:

- an M stage keeps ``max(3, max_keep_ckpts)`` checkpoints (``stages/common.py``), each M + D_M's weights with the
  optimiser state of what each optimiser trains (SGD with momentum: one tensor per parameter, Adam/AdamW: two),
  plus ``final_model.pth`` and ``segmentor.pth`` (weights);
- a trained F stage keeps as many checkpoints of F with Adam's state and its two image pools full (``buffer_size``
  float32 crops per domain), plus ``final_model.pth``;
- a translate stage writes one S' PNG per source image; a pseudo-label stage one label PNG per target image, and
  while it runs a cache of the label and its 16-bit confidence per pixel; ``train_cfg.ssl_baseline_source`` (row 21)
  one more copy of S per run, at M's source scale. Images are bounded by their raw size (PNG of a photograph
  compresses, a generated scene far more): the estimate is an upper bound.
"""
import copy
import os
import os.path as osp
import shutil
from typing import Dict, Optional

from ..structures.plan import PSEUDO_LABEL, TRANSLATE, TRANSLATION
from ..structures.stage_kinds import M_KINDS
from .prealign import ssl_baseline_folder, ssl_baseline_size
from .runner import CONSOLE

GIB = 2**30
KEPT_CHECKPOINTS = 3


def param_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values() if hasattr(t, 'numel'))


def trainable_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)


def optimiser_state(optimizer_cfg) -> int:
    """State tensors per trained parameter: SGD with momentum 1, Adam/AdamW 2, plain SGD 0."""
    opt = optimizer_cfg or {}
    kind = str(opt.get('type', '')).split('.')[-1].lower()
    return 2 if kind.startswith('adam') else 1 if opt.get('momentum') else 0


def checkpoint_bytes(model, optim_cfg) -> int:
    """A training checkpoint: the weights, and the optimiser state of the parameters each wrapper trains (a wrapper
    dict is keyed by submodule: ``segmentor``/``discriminator``, ``generators``/``discriminators``)."""
    total = param_bytes(model)
    if 'optimizer' in optim_cfg:
        return total + optimiser_state(optim_cfg['optimizer']) * trainable_bytes(model)
    for name, wrapper in optim_cfg.items():
        sub = getattr(model, name, None)
        if sub is not None and isinstance(wrapper, dict):
            total += optimiser_state(wrapper.get('optimizer')) * trainable_bytes(sub)
    return total


def kept_checkpoints(cfg) -> int:
    keep = ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('max_keep_ckpts', -1)
    return max(KEPT_CHECKPOINTS, keep) if keep > 0 else KEPT_CHECKPOINTS


def image_size(folder: str, suffix: str):
    """(W, H) of the first image in ``folder`` (recursively), or None."""
    from PIL import Image
    for dirpath, _, files in os.walk(folder):
        for f in sorted(files):
            if f.endswith(suffix):
                with Image.open(osp.join(dirpath, f)) as im:
                    return im.size
    return None


def f_bytes(configs, stage) -> Optional[dict]:
    """F's weights and image pools, from its config (M, used by the perceptual loss only, is not saved with F)."""
    from mmagic.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = configs.translation_cfg(stage, None)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.update(segmentor=None, perceptual_loss=None)
    with DefaultScope.overwrite_default_scope('mmagic'):  # and back: the run's next stage builds in its own scope
        model = MODELS.build(model_cfg)
    crop = next((t['crop_size'] for t in cfg.train_dataloader.dataset.pipeline if t['type'].endswith('Crop')), None)
    width = next((t['width'] for t in cfg.train_dataloader.dataset.pipeline if t['type'].endswith('ScaleWidth')),
                 None)
    pools = 2 * model_cfg.get('buffer_size', 50) * 3 * crop[0] * crop[1] * 4 if crop else 0
    return dict(weights=param_bytes(model), checkpoint=checkpoint_bytes(model, cfg.optim_wrapper) + pools,
                keep=kept_checkpoints(cfg), width=width)


def estimate_plan_bytes(plan, configs, outer_model, units: Dict[str, Optional[int]], done=()) -> dict:
    """Bytes the stages of ``plan`` not in ``done`` will write, by kind: ``m``, ``f``, ``translate``,
    ``pseudo_label``; ``units`` are the planned images of the translate and pseudo-label stages."""
    out = dict(m=0, f=0, translate=0, pseudo_label=0)
    m_weights = param_bytes(outer_model)
    seg_weights = param_bytes(getattr(outer_model, 'segmentor', outer_model))
    f = None
    # row 21: B(S), once per run (with the first translate stage to run) unless it was begun
    ssl_copy = bool(plan.ssl_baseline_source) and not osp.exists(osp.join(ssl_baseline_folder(configs.work_dir),
                                                                          'record.json'))
    for stage in plan:
        if stage.name in done:
            continue
        if stage.kind in M_KINDS:
            cfg = configs.m_stage_cfg(stage)
            ckpt = checkpoint_bytes(outer_model, cfg.optim_wrapper)
            out['m'] += kept_checkpoints(cfg) * ckpt + m_weights + seg_weights
        elif stage.kind == TRANSLATION and configs.translation_baseline(stage) is None:
            f = f or f_bytes(configs, stage)
            out['f'] += f['keep'] * f['checkpoint'] + f['weights']
        elif stage.kind == TRANSLATE and units.get(stage.name):
            source = configs.cfg.train_dataloader.dataset.source
            size = image_size(osp.join(source.get('data_root', ''), source.data_prefix.img_path), '.png')
            if size is None:
                continue
            w, h = size
            if configs.prealign(stage) is not None:  # row 20: the translation stage's prealigned copy of S
                out['translate'] += units[stage.name] * w * h * 3
            if ssl_copy:  # at the scale M's source pipeline resizes to, where it has one (ssl_baseline_size)
                bw, bh = ssl_baseline_size(source) or (w, h)
                out['translate'], ssl_copy = out['translate'] + units[stage.name] * bw * bh * 3, False
            f = f if configs.translation_baseline(stage) is not None else (f or f_bytes(configs, stage))
            if configs.translation_baseline(stage) is None and f.get('width'):
                w, h = f['width'], round(h * f['width'] / w)
            out['translate'] += units[stage.name] * w * h * 3
        elif stage.kind == PSEUDO_LABEL and units.get(stage.name):
            scale = next((t['scale'] for t in configs.cfg.train_dataloader.dataset.target.pipeline
                          if t['type'].split('.')[-1] == 'Resize'), None)
            if scale is not None:
                out['pseudo_label'] += units[stage.name] * scale[0] * scale[1] * (1 + 3)  # label + cache
    out['total'] = sum(out.values())
    return out


def check_free_space(work_dir: str, estimate: dict, logger=None) -> bool:
    """Warn (one line) when ``work_dir``'s file system has less free space than ``estimate['total']``."""
    os.makedirs(work_dir, exist_ok=True)
    free = shutil.disk_usage(work_dir).free
    parts = ', '.join(f'{k} {v / GIB:.1f}' for k, v in estimate.items() if k != 'total' and v)
    line = (f'[BDL] preflight: the remaining stages may write up to {estimate["total"] / GIB:.1f} GiB ({parts}); '
            f'{free / GIB:.1f} GiB free in {work_dir}')
    fits = free >= estimate['total']
    if logger is not None:
        if fits:
            logger.info(line, extra=CONSOLE)
        else:
            logger.warning(line + ': it may not fit (a full disk stops the run, naming the file; free space, '
                           'then --resume)')
    return fits


def check_plan_disk(plan, configs, outer_model, work_dir: str, done=(), logger=None) -> Optional[dict]:
    """The preflight's disk check (main process): estimate what the stages not yet done will write and warn when
    it may not fit. An estimate that cannot be made is logged and the run goes on."""
    import torch
    try:
        with torch.random.fork_rng(devices=[]):  # building F's modules draws random numbers: not the run's
            units = {s.name: configs.planned_units(s).get('units') for s in plan
                     if s.kind in (TRANSLATE, PSEUDO_LABEL) and s.name not in done}
            estimate = estimate_plan_bytes(plan, configs, outer_model, units, done)
    except Exception as e:  # noqa: BLE001 - an estimate is advice; the data checks have already passed
        if logger is not None:
            logger.info(f'[BDL] preflight: no disk estimate ({type(e).__name__}: {e})')
        return None
    check_free_space(work_dir, estimate, logger)
    return estimate
