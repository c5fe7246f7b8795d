"""The translation stages: F(k) trained (or a baseline fitted in its place), then S'(k) = F(k)(S)."""
import hashlib
import json
import os
import os.path as osp

import torch
from mmengine.dist import barrier, get_dist_info, is_main_process

from ...structures.plan import TRANSLATE, Stage
from ...utils.atomic_io import atomic_write_json
from ..checkpoint import save_model_checkpoint
from ..prealign import prealigned_folder, ssl_baseline_folder, ssl_baseline_size
from ..stage_configs import image_folder
from .common import release_workers, run_child
from .context import StageContext
from .diagnostics import translation_diagnostics


def run_translation(ctx: StageContext, stage: Stage, inputs: dict) -> dict:
    """Train F(k) with its perceptual loss through M(k-1) (``inputs['previous_m']``), or fit the track's baseline
    (which reads no M)."""
    m_checkpoint = (inputs.get('previous_m') or {}).get('segmentor_checkpoint')
    if ctx.configs.translation_baseline(stage) is not None:
        return fit_baseline(ctx, stage)
    cfg = ctx.configs.translation_cfg(stage, m_checkpoint)
    prealigned = prealign_source(ctx, stage) if ctx.configs.prealign(stage) is not None else {}
    config_path = osp.join(cfg.work_dir, 'translation_config.py')
    if is_main_process():
        os.makedirs(cfg.work_dir, exist_ok=True)
        cfg.dump(config_path)  # translate stage and later users rebuild F from this exact config
    # F's image pools go into its checkpoints and come back on resume (not in the state dict)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='ImagePoolCheckpointHook')]
    child = run_child(ctx, cfg)
    release_workers(child)
    ckpt = osp.join(cfg.work_dir, 'final_model.pth')
    if is_main_process():
        save_model_checkpoint(child.model, ckpt)
    barrier()
    return dict(checkpoint=ckpt, config=config_path, perceptual_m=m_checkpoint, **prealigned)


def fitted_record(settings: dict, folders: dict) -> dict:
    """A translation baseline built from ``settings`` and fitted on the images of ``folders['target']``: its record
    (type, settings, fitted state; :meth:`~bdl_mm.models.translators.TranslationBaseline.to_record`) with the target
    folder and its number of images."""
    from ...datasets.unpaired_translation_dataset import UnpairedTranslationDataset
    from ...models.translators.translation_baseline import build_baseline
    targets = [info['path'] for info in UnpairedTranslationDataset(folders['source'], folders['target']).data_infos_b]
    baseline = build_baseline(settings)
    baseline.fit(targets)
    return dict(baseline.to_record(), target_folder=dict(folders['target']), num_target_images=len(targets))


def fit_baseline(ctx: StageContext, stage: Stage) -> dict:
    """A baseline in F's place (``stages.translation.type``): no training; fitted on M's target images (main
    process) and recorded, atomically, in ``<stage>/translator.json`` (type, settings, fitted state) beside
    ``translation_config.py``."""
    cfg = ctx.configs.translation_cfg(stage, None)
    record_path = osp.join(cfg.work_dir, 'translator.json')
    config_path = osp.join(cfg.work_dir, 'translation_config.py')
    if is_main_process():
        record = fitted_record(cfg.model, cfg.train_dataloader.dataset)
        os.makedirs(cfg.work_dir, exist_ok=True)
        cfg.dump(config_path)
        atomic_write_json(record_path, record)
    barrier()
    return dict(translator=record_path, config=config_path, baseline=cfg.model['type'])


def prealign_source(ctx: StageContext, stage: Stage) -> dict:
    """Ledger row 20 (``stages.translation.prealign``, e.g. ``dict(type='Reinhard')``): the baseline's copy of S
    (:func:`baseline_copy`, its record ``<stage>/prealign.json``) in ``<stage>/prealigned_source``, the folder F is
    trained on (``StageConfigBuilder.translation_cfg``) and that the translate stage reads."""
    record_path = osp.join(ctx.stage_dir(stage), 'prealign.json')
    out_dir = prealigned_folder(ctx.stage_dir(stage), ctx.configs.m_image_folders()['source'])['data_root']
    counts = baseline_copy(ctx, ctx.configs.prealign(stage), record_path, out_dir)
    return dict(prealign=record_path, source_dir=osp.abspath(out_dir), prealign_counts=counts)


def write_ssl_baseline_source(ctx: StageContext) -> dict:
    """Ledger row 21 (``train_cfg.ssl_baseline_source``): B(S), the SSL stages' second copy of the source, in
    ``<work_dir>/ssl_baseline_source`` (:func:`baseline_copy`, its record ``record.json`` there). Written by the
    first SSL stage of the run; a later one (or a resumed one) finds the record of the same settings and the same
    target images, skips the fit and completes any image still missing. Written at the scale M's source pipeline
    resizes to (:func:`~bdl_mm.engine.prealign.ssl_baseline_size`: the same pixels for M, less disk)."""
    out_dir = ssl_baseline_folder(ctx.work_dir)
    record_path = osp.join(out_dir, 'record.json')
    size = ssl_baseline_size(ctx.configs.cfg.train_dataloader.dataset.source)
    return baseline_copy(ctx, ctx.plan.ssl_baseline_source, record_path, out_dir, resize_output=size)


def baseline_copy(ctx: StageContext, settings: dict, record_path: str, out_dir: str, resize_output=None) -> dict:
    """A translation baseline (``settings``, e.g. ``dict(type='Reinhard')``) fitted on M's target images (main
    process; recorded atomically in ``record_path``, kept where it was fitted with the same settings on the same
    target folder), then every source image through it into ``out_dir`` (split over the processes; atomic files, so
    an interrupted copy resumes). Returns the counts of :func:`~bdl_mm.apis.translate_dataset`."""
    from ...apis import translate_dataset
    from ...models.translators.translation_baseline import baseline_from_record
    folders = ctx.configs.m_image_folders()
    if is_main_process():
        record = None
        if osp.exists(record_path):
            with open(record_path) as f:
                record = json.load(f)
            if record.get('requested') != dict(settings) or record.get('target_folder') != dict(folders['target']):
                record = None  # another baseline or another target: fitted again
        if record is None:
            os.makedirs(osp.dirname(record_path), exist_ok=True)
            atomic_write_json(record_path, dict(fitted_record(settings, folders), requested=dict(settings)))
    barrier()
    with open(record_path) as f:
        baseline = baseline_from_record(json.load(f))
    source = folders['source']
    rank, world_size = get_dist_info()
    counts = translate_dataset(baseline, osp.join(source['data_root'], source['img_dir']), out_dir,
                               img_suffix=source['img_suffix'], shard_id=rank, num_shards=world_size,
                               resize_output=resize_output, progress=is_main_process() and ctx.verbose_console)
    barrier()
    return counts


def run_translate(ctx: StageContext, stage: Stage, inputs: dict) -> dict:
    """S'(k) = F(k)(S) (``inputs['translator']``: F or a baseline), then its diagnostics with M(k-1)."""
    result = translate(ctx, stage, inputs['translator'])
    if ctx.diagnostics is not None:
        result['diagnostics'] = translation_diagnostics(ctx, stage, result, inputs['previous_m'])
    return result


def translate(ctx: StageContext, stage: Stage, f_result: dict) -> dict:
    """Every source image through F (``f_result``: a translation stage's record), split over the processes; an
    S' of an earlier round made by the same fitted baseline is reused."""
    from ...apis import load_translator, translate_dataset
    from ...apis.translate import training_width
    source = image_folder(ctx.cfg.train_dataloader.dataset.source)
    # F's own source: the prealigned one where row 20 wrote it (``source_dir``), else S
    src_dir = f_result.get('source_dir') or osp.join(source['data_root'], source['img_dir'])
    out_dir = ctx.stage_dir(stage)
    rank, world_size = get_dist_info()
    # a progress bar on mmengine's full console only: the concise console has the stage's start and end lines
    settings = dict(img_suffix=source['img_suffix'], progress=is_main_process() and ctx.verbose_console)
    settings.update(ctx.configs.stage_cfgs[TRANSLATE].to_dict())
    extra = {}
    if f_result.get('translator'):  # a baseline: image by image, at the source's resolution
        from ...models.translators.translation_baseline import baseline_from_record
        with open(f_result['translator']) as f:
            record = json.load(f)
        translator = baseline_from_record(record)
        what = [record, {k: v for k, v in settings.items() if k != 'progress'}]  # the same on every rank
        what = json.dumps(what, sort_keys=True, default=str).encode()
        extra['translator_digest'] = hashlib.sha256(what).hexdigest()
        for earlier in ctx.plan:  # S' of an earlier round, made by the same fitted baseline: reused (completed)
            done = ctx.state.get(earlier.name) or {}
            if (earlier.kind == TRANSLATE and earlier.k < stage.k and done.get('status') == 'done'
                    and done.get('translator_digest') == extra['translator_digest']):
                out_dir, extra['reused_from'] = done['translated_dir'], earlier.name
                break
    else:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        translator = load_translator(f_result['config'], f_result['checkpoint'], device=device)
        if 'scale' not in settings:  # the release translates at F's training scale (pytorch-CycleGAN scale_width)
            settings.setdefault('scale_width', training_width(f_result['config']))
    counts = translate_dataset(translator, src_dir, out_dir, shard_id=rank, num_shards=world_size, **settings)
    barrier()
    return dict(translated_dir=osp.abspath(out_dir), counts=counts, **extra)
