"""The child config of every stage of Algorithm 1, derived from the outer BDL config: the configuration of the
adaptation model M (``BDLSegmentor``: model, UDA dataloader, optimisers, schedules, evaluation).
:class:`StageConfigBuilder` derives from it, per stage of a :class:`~bdl_mm.structures.plan.Plan`: the config of an
M stage (source-only, adaptation, SSL adaptation, the oracle), F's config (its own file, reading M's image folders,
with M(k-1) for its perceptual loss) or a translation baseline's, each with its own work dir and experiment name,
and the AMP / DDP / environment patches of the outer run."""
import copy
import inspect
import math
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.dist import get_dist_info
from mmseg.registry import DATASETS, MODELS

from ..structures.plan import (
    M_KINDS,
    ORACLE,
    PSEUDO_LABEL,
    SOURCE_ONLY,
    SSL_ADAPTATION,
    TRANSLATE,
    TRANSLATION,
    Plan,
    Stage,
)
from ..utils import apply_global_batch_size, cpu_model_wrapper, enable_amp
from .prealign import prealign_settings, prealigned_folder, read_prealigned_source, second_source
from .runner.concise_runner import warnings_to_log_file

# the repository's configs/ folder (bdl_mm/engine/ -> repo root)
CONFIGS_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def resolve_config_path(path: str, config_filename: Optional[str]) -> str:
    """A stage config path: absolute, or relative to the BDL config's folder, the repo's configs/ or the cwd."""
    candidates = [path] if osp.isabs(path) else [
        osp.join(d, path) for d in (osp.dirname(config_filename) if config_filename else None, CONFIGS_DIR,
                                    os.getcwd()) if d
    ]
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(f'train_cfg.stages.translation.config: no such file: {path} (looked in '
                            f'{", ".join(osp.dirname(c) for c in candidates)})')


def img_suffix(dataset_cfg) -> str:
    """The image suffix of an MMSeg dataset config: its ``img_suffix``, else its class's default (e.g.
    ``CityscapesDataset``: ``_leftImg8bit.png``, ``BDD100KDataset``: ``.jpg``), else ``.png``."""
    if dataset_cfg.get('img_suffix'):
        return dataset_cfg['img_suffix']
    try:
        cls = DATASETS.get(dataset_cfg.get('type'))
    except Exception:  # noqa: BLE001 - an unknown type fails where the dataset is built
        cls = None
    for klass in getattr(cls, '__mro__', ()):
        param = inspect.signature(klass.__init__).parameters.get('img_suffix') if '__init__' in vars(klass) else None
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return '.png'


def image_folder(dataset_cfg) -> dict:
    """Where an MMSeg dataset config reads its images, as F's ``UnpairedTranslationDataset`` domains are written:
    ``dict(data_root, img_dir=data_prefix.img_path, img_suffix)``."""
    return dict(data_root=dataset_cfg.get('data_root') or '',
                img_dir=(dataset_cfg.get('data_prefix') or {}).get('img_path') or '',
                img_suffix=img_suffix(dataset_cfg))


def same_folder(a: dict, b: dict) -> bool:
    """Two :func:`image_folder` dicts name the same folder and suffix."""
    def folder(d):
        return osp.normpath(osp.join(d.get('data_root') or '', d.get('img_dir') or ''))

    return folder(a) == folder(b) and a.get('img_suffix', '.png') == b.get('img_suffix', '.png')


def check_model_switches(cfg):
    """One switch for adversarial training, ``train_cfg.adversarial``: the outer ``model`` must not set its own.
    ``model.class_mix`` crops source images to the target's size: refused before any stage runs when the train
    pipelines' fixed sizes say a source image is smaller than a target image."""
    if 'adversarial' in (cfg.get('model') or {}):
        raise ValueError('model.adversarial: set train_cfg.adversarial instead (the one switch for adversarial '
                         'training; the loop sets each stage\'s model.adversarial from it)')
    if (cfg.get('model') or {}).get('class_mix'):
        dataset = ((cfg.get('train_dataloader') or {}).get('dataset') or {})
        sizes = {name: pipeline_size((dataset.get(name) or {}).get('pipeline') or []) for name in ('source', 'target')}
        src, tgt = sizes['source'], sizes['target']
        if src is not None and tgt is not None and (src[0] < tgt[0] or src[1] < tgt[1]):
            raise ValueError(f'model.class_mix pastes source crops of the target\'s size, but the source images are '
                             f'{src[0]}x{src[1]} and the target images {tgt[0]}x{tgt[1]} (width x height, from the '
                             'train pipelines): resize the source to at least the target\'s size or turn class_mix off')


def pipeline_size(pipeline) -> Optional[tuple]:
    """``(width, height)`` of the images a pipeline ends with when its transforms fix it (``Resize`` without
    ``keep_ratio``, ``RandomCrop``), else None."""
    size = None
    for transform in pipeline:
        kind = str(transform.get('type', '')).split('.')[-1]
        if kind == 'Resize':
            scale = transform.get('scale')
            size = tuple(scale) if scale is not None and not transform.get('keep_ratio', False) else None
        elif kind == 'RandomCrop' and size is not None:
            h, w = transform.get('crop_size')
            size = (min(size[0], w), min(size[1], h))
        elif kind in ('RandomResize', 'RandomChoiceResize', 'RandomRescale'):
            size = None
    return size


def train_iters(cfg: Config) -> Optional[int]:
    """Planned iterations of a training config: ``max_iters``, or epochs x the dataloader's length per process."""
    loop = cfg.get('train_cfg') or {}
    if loop.get('max_iters') is not None:
        return int(loop['max_iters'])
    if loop.get('max_epochs') is None:
        return None
    loader = cfg.train_dataloader
    world_size = get_dist_info()[1]
    per_rank = math.ceil(len(DATASETS.build(copy.deepcopy(loader.dataset))) / world_size)
    batch = int(loader.get('batch_size', 1))
    per_epoch = per_rank // batch if loader.get('drop_last', False) else math.ceil(per_rank / batch)
    return int(loop['max_epochs']) * per_epoch


class StageConfigBuilder:
    """Each stage's child config, derived from the outer BDL config ``cfg``; its ``train_cfg.ssl_lr_factor``
    (default 1.0) multiplies M's learning rate in every SSL stage.

    Args:
        cfg (Config): the outer BDL config (the runner's).
        plan (Plan): the run's plan (its stage settings, references and ablation switches).
        work_dir (str): the run's work dir; each stage works in ``<work_dir>/<stage name>``.
        adversarial (bool): ``train_cfg.adversarial``: whether the adaptation stages train with D_M.
    """

    def __init__(self, cfg: Config, plan: Plan, work_dir: str, adversarial: bool = True):
        self.cfg, self.plan, self.work_dir = cfg, plan, work_dir
        self.adversarial = adversarial
        ssl_lr_factor = (cfg.get('train_cfg') or {}).get('ssl_lr_factor', 1.0)
        if isinstance(ssl_lr_factor, bool) or not isinstance(ssl_lr_factor, (int, float)) or not ssl_lr_factor > 0:
            raise ValueError(f'train_cfg.ssl_lr_factor must be a number > 0, got {ssl_lr_factor!r}')
        self.ssl_lr_factor = float(ssl_lr_factor)
        self.stage_cfgs = plan.stage_settings
        self.references = plan.references

    def stage_dir(self, stage: Stage) -> str:
        return osp.join(self.work_dir, stage.name)

    # ------------------------------------------------------------------ M
    def m_stage_cfg(self, stage: Stage, translated_dir=None, pseudo_label_dir=None, load_from=None) -> Config:
        """The config of an M training stage (source-only, adaptation, SSL adaptation, oracle)."""
        cfg = copy.deepcopy(self.cfg)
        for key in ('train_cfg', 'work_dir', 'resume', 'load_from', 'experiment_name'):
            cfg.pop(key, None)
        if stage.kind == ORACLE:  # trained like M(0) unless the oracle's settings say otherwise
            overrides = Config(copy.deepcopy(self.stage_cfgs[SOURCE_ONLY]).to_dict())
            overrides.merge_from_dict({k: v for k, v in (self.references['oracle'] or {}).items() if k != 'dataset'})
            overrides = overrides._cfg_dict
        else:
            overrides = copy.deepcopy(self.stage_cfgs[stage.kind])
        cfg.merge_from_dict(overrides.to_dict(), allow_list_keys=True)
        if stage.kind == SSL_ADAPTATION and self.ssl_lr_factor != 1:
            self.scale_m_lr(cfg, self.ssl_lr_factor)
        cfg.model.adversarial = bool(self.adversarial) and stage.kind not in (SOURCE_ONLY, ORACLE)
        dataset = cfg.train_dataloader.dataset
        if stage.kind == ORACLE:  # the target's labelled train split, segmentation loss alone
            cfg.train_dataloader.dataset = self.oracle_dataset()
        elif stage.kind == SOURCE_ONLY:
            # M(0) sees the labelled source only; BDLSegmentor then trains with the segmentation loss alone.
            cfg.train_dataloader.dataset = dataset.source
        else:
            if translated_dir is not None:
                if self.plan.second_copy(stage):  # rows 17, 21, 22: S' and a second copy of the source
                    dataset.update(second_source(self.plan, dataset.source, self.work_dir))
                dataset.source.data_prefix = dict(dataset.source.get('data_prefix', {}), img_path=translated_dir)
            dataset.pseudo_label_dir = pseudo_label_dir
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='StageMetricsHook')]
        self.set_stage_run(cfg, stage)
        cfg.load_from = load_from
        return cfg

    @staticmethod
    def scale_m_lr(cfg: Config, factor: float):
        """``train_cfg.ssl_lr_factor``: M's learning rate (``optim_wrapper.segmentor.optimizer.lr``) times
        ``factor``, its schedule's shape and D_M's optimiser untouched."""
        optimizer = ((cfg.get('optim_wrapper') or {}).get('segmentor') or {}).get('optimizer') or {}
        if 'lr' not in optimizer:
            raise ValueError('train_cfg.ssl_lr_factor scales optim_wrapper.segmentor.optimizer.lr, which this '
                             'config does not set')
        optimizer.lr = optimizer.lr * factor

    def import_cfg(self, stage: Stage) -> Config:
        """The config that evaluates an imported M(0) (``train_cfg.source_only_checkpoint``): no training."""
        cfg = self.m_stage_cfg(stage)
        for key in ('train_cfg', 'train_dataloader', 'optim_wrapper', 'param_scheduler'):
            cfg.pop(key, None)
        return cfg

    def set_stage_run(self, cfg: Config, stage: Stage):
        """Work dir, experiment name and launcher of a stage's own runner."""
        cfg.work_dir = self.stage_dir(stage)
        # unique per stage: mmengine keys its logger, message hub and visualizer instances by this name
        cfg.experiment_name = f'{osp.basename(osp.normpath(self.work_dir))}_{stage.name.replace("/", "_")}'
        cfg.launcher = self.cfg.get('launcher', 'none')

    def oracle_dataset(self) -> ConfigDict:
        """The target's labelled train split for the oracle: ``references.oracle.dataset``, else derived from the
        target train set (its images, data root and training resize) and the val set (dataset type, label folder
        with the target's split name, e.g. ``gtFine/val`` -> ``gtFine/train``, label suffix), loading the labels
        before the resize as the source pipeline does."""
        settings = self.references['oracle'] or ConfigDict()
        if settings.get('dataset') is not None:
            return copy.deepcopy(settings.dataset)
        target = copy.deepcopy(self.cfg.train_dataloader.dataset.get('target'))
        val = copy.deepcopy((self.cfg.get('val_dataloader') or {}).get('dataset'))
        if target is None or val is None:
            raise ValueError('train_cfg.references.oracle.dataset: the oracle needs the target\'s labelled train '
                             'split; it cannot be derived without train_dataloader.dataset.target and '
                             'val_dataloader.dataset')
        img_path = (target.get('data_prefix') or {}).get('img_path') or ''
        val_labels = (val.get('data_prefix') or {}).get('seg_map_path') or ''
        labels = osp.join(osp.dirname(val_labels.rstrip('/')), osp.basename(img_path.rstrip('/')))
        pipeline = []
        for transform in target.get('pipeline') or []:
            kind = str(transform.get('type', ''))
            if kind.endswith('LoadPseudoLabel'):
                continue
            if kind.endswith('PackUDAInputs'):
                transform = dict(type='PackSegInputs')
            pipeline.append(transform)
            if kind.endswith('LoadImageFromFile'):
                pipeline.append(dict(type='LoadAnnotations'))
        dataset = copy.deepcopy(val)
        dataset.update(data_root=target.get('data_root', val.get('data_root')),
                       data_prefix=dict(img_path=img_path, seg_map_path=labels), pipeline=pipeline)
        for key in ('img_suffix', 'ann_file'):
            if key in target:
                dataset[key] = target[key]
            else:
                dataset.pop(key, None)
        return dataset

    def m_image_folders(self) -> dict:
        """``{'source': ..., 'target': ...}``: the image folders of M's UDA training data (:func:`image_folder`), the
        folders F (or a baseline) learns from by default."""
        dataset = self.cfg.train_dataloader.dataset
        return {side: image_folder(dataset[side]) for side in ('source', 'target') if dataset.get(side)}

    # ------------------------------------------------------------------ F
    @staticmethod
    def translation_key(stage: Optional[Stage] = None) -> str:
        """The config key of a stage's translation settings."""
        return f'train_cfg.references.{stage.track}.translation' if stage is not None and stage.track else \
            'train_cfg.stages.translation'

    def translation_settings(self, stage: Optional[Stage] = None) -> Optional[ConfigDict]:
        return self.plan.translation_settings(stage.track if stage is not None else '')

    def translation_baseline(self, stage: Optional[Stage] = None) -> Optional[dict]:
        """The baseline in F's place, ``train_cfg.stages.translation.type`` (or a reference track's
        ``translation.type``) with the other keys as its settings (``config`` and ``cfg_options``, F's, are
        ignored); None without ``type`` (F is trained). An unknown type raises ValueError naming the key."""
        settings = self.translation_settings(stage) or ConfigDict()
        if settings.get('type') is None:
            return None
        self.prealign(stage)  # row 20 goes with F only: a prealign beside a baseline type fails here, naming its key
        from ..models.translators.translation_baseline import baseline_class, baseline_types
        key = self.translation_key(stage)
        if baseline_class(settings['type']) is None:
            raise ValueError(f'{key}.type: unknown translation type {settings["type"]!r}; '
                             f'known: {", ".join(baseline_types())} (or no type: F, trained from {key}.config)')
        return {k: v for k, v in settings.to_dict().items() if k not in ('config', 'cfg_options')}

    def prealign(self, stage: Optional[Stage] = None) -> Optional[dict]:
        """``stages.translation.prealign`` (ledger row 20): :func:`~bdl_mm.engine.prealign.prealign_settings`."""
        return prealign_settings(self.translation_settings(stage), f'{self.translation_key(stage)}.prealign')

    def translation_cfg(self, stage: Stage, m_checkpoint: Optional[str] = None) -> Config:
        """F's config: its file (``stages.translation.config``), reading M's source and target image folders
        (``train_dataloader.dataset.{source,target}`` of the BDL config, unless ``stages.translation.cfg_options``
        sets them; row 20: the prealigned source), with M(k-1) (``m_checkpoint``) for its perceptual loss. For a
        baseline (``stages.translation.type``): its settings as ``model`` and its folders as ``train_dataloader``."""
        settings = copy.deepcopy(self.translation_settings(stage) or ConfigDict())
        folders = self.m_image_folders()
        baseline = self.translation_baseline(stage)
        if baseline is not None:
            cfg = Config(dict(model=baseline, train_dataloader=dict(dataset=dict(
                type='mmagic.UnpairedTranslationDataset', pipeline=[], **folders))))
            self.set_stage_run(cfg, stage)
            return cfg
        path = settings.get('config')
        if path is None:
            raise ValueError(f'{self.translation_key(stage)}.config: the F config path is missing')
        path = resolve_config_path(path, self.cfg.filename)
        cfg = Config.fromfile(path)
        dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
        if str(dataset.get('type', '')).endswith('UnpairedTranslationDataset'):
            for side, folder in folders.items():  # M's folders (the file's spelling is kept where it is the same)
                if not same_folder(dataset.get(side) or {}, folder):
                    dataset[side] = folder
        if settings.get('cfg_options'):
            cfg.merge_from_dict(settings.cfg_options.to_dict(), allow_list_keys=True)
        if self.prealign(stage) is not None:  # row 20: F reads the prealigned source its stage writes first
            folder = prealigned_folder(self.stage_dir(stage), folders['source'])
            read_prealigned_source(cfg, folder, f'{self.translation_key(stage)}.prealign')
        # F's perceptual loss runs the current M (architecture from the BDL config, weights from M(k-1)), fed in M's
        # input format (its data_preprocessor) unless F's config states one (checked against M at build).
        from ..apis.m_model import m_input_format, m_model_cfg
        m_cfg = m_model_cfg(self.cfg)
        cfg.model.segmentor = dict(cfg.model.get('segmentor', {}), config=m_cfg, checkpoint=m_checkpoint)
        if cfg.model.get('seg_input') is None:
            cfg.model.seg_input = m_input_format(m_cfg)
        if not self.plan.perceptual:  # ablation: MMagic's plain CycleGAN (PerceptualCycleGAN needs no M then)
            cfg.model.perceptual_loss = None
            cfg.model.segmentor = None
        self.set_stage_run(cfg, stage)
        apply_global_batch_size(cfg, get_dist_info()[1])
        if cfg.launcher == 'pytorch':
            cpu_model_wrapper(cfg)
        if self.uses_amp():
            enable_amp(cfg)
        if 'env_cfg' in self.cfg:
            cfg.env_cfg = copy.deepcopy(self.cfg.env_cfg)
        cfg.pop('load_from', None)
        return cfg

    def uses_amp(self) -> bool:
        """``tools/train.py --amp`` switched the outer wrappers: F's config (read from its own file) follows."""
        return 'AmpOptimWrapper' in str(self.cfg.get('optim_wrapper', ''))

    # ------------------------------------------------------------------ checks and planned work
    @torch.random.fork_rng(devices=[])  # throw-away builds: M's initial weights, drawn later, must not depend on them
    def check_stage_configs(self):
        """Derive and build every stage's model before any training, naming the key that fails."""
        from ..apis.m_model import check_m_classes
        check_m_classes(self.cfg)  # M predicts the dataset's classes (one line naming the key)
        built = set()  # stages usually share one model config: build each distinct one once
        # one stage per kind, and per track for the translation (each track has its own)
        checks = {(s.kind, s.track if s.kind == TRANSLATION else ''): s for s in self.plan}
        for (kind, track) in checks:
            if kind in (TRANSLATE, PSEUDO_LABEL):
                continue
            check = Stage('check', kind, track=track)
            key = self.translation_key(check) if kind == TRANSLATION else (
                'train_cfg.references.oracle' if kind == ORACLE else f'train_cfg.stages.{kind}')
            if kind == TRANSLATION and self.translation_baseline(check) is not None:  # unknown type fails here
                from ..models.translators.translation_baseline import build_baseline
                try:
                    build_baseline(self.translation_cfg(check, None).model)
                except Exception as e:  # noqa: BLE001 - re-raised with the key that failed
                    raise ValueError(f'{key}: the translation baseline does not build: {type(e).__name__}: {e}') from e
                continue
            try:
                if kind == TRANSLATION:
                    cfg = self.translation_cfg(check, None)
                    from mmagic.registry import MODELS as registry
                else:
                    cfg = self.m_stage_cfg(check)
                    if 'train_cfg' not in cfg:
                        raise KeyError('train_cfg (the stage\'s training loop) is missing')
                    registry = MODELS
                key_repr = repr(cfg.model)
                if key_repr not in built:
                    with warnings_to_log_file():  # a throw-away model: its warnings come again when it runs
                        registry.build(cfg.model)
                    built.add(key_repr)
            except Exception as e:  # noqa: BLE001 - re-raised with the key that failed
                raise ValueError(f'{key}: the stage config does not build: {type(e).__name__}: {e}') from e

    def planned_units(self, stage: Stage, logger=None) -> dict:
        """Planned work of a stage: iterations (training stages: ``max_iters``, or epochs x dataloader length)
        or images (translation of S, pseudo labels of T). ``units=None`` where it cannot be known (logged)."""
        unit = 'image' if stage.kind in (TRANSLATE, PSEUDO_LABEL) else 'iter'
        try:
            if stage.kind == SOURCE_ONLY and self.plan.source_only_checkpoint is not None:
                return dict(units=None, unit=None)
            if stage.kind in M_KINDS:
                return dict(units=train_iters(self.m_stage_cfg(stage)), unit=unit)
            if stage.kind == TRANSLATION:
                return dict(units=train_iters(self.translation_cfg(stage, None)), unit=unit)
            if stage.kind == TRANSLATE:
                from ..apis import list_images
                source = self.cfg.train_dataloader.dataset.source
                suffix = self.stage_cfgs[TRANSLATE].get('img_suffix', img_suffix(source))
                src_dir = osp.join(source.get('data_root', ''), source.data_prefix.img_path)
                return dict(units=len(list_images(src_dir, suffix)), unit=unit)
            target = copy.deepcopy(self.cfg.train_dataloader.dataset.target)
            target.pipeline = []
            return dict(units=len(DATASETS.build(target)), unit=unit)
        except Exception as e:  # noqa: BLE001 - the status then has no ETA for this stage; training goes on
            if logger is not None:
                logger.info(f'[BDL] planned work of {stage.name} unknown ({type(e).__name__}: {e})')
            return dict(units=None, unit=unit)
