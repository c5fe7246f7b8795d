"""Algorithm 1 of the paper (bidirectional learning) as one mmengine training loop.

``python tools/train.py configs/bdl_gta5.py`` builds a Runner whose ``train_cfg`` is this loop. The outer
config is the configuration of the adaptation model M (``BDLSegmentor``: model, UDA dataloader, optimisers,
schedules, evaluation); the loop derives one sub-config per stage from it and runs each stage with its own
mmengine Runner, work dir, logs and checkpoints::

    m0                      source-only M(0)            (or ``source_only_checkpoint``)
    k{k}/translation        train F(k), perceptual loss through M(k-1)
    k{k}/translate          S'(k) = F(k)(S), every source image, labels unchanged
    k{k}/m0                 M_0(k) on S'(k) + T
    k{k}/ssl{i}, k{k}/m{i}  pseudo-label T with M_(i-1)(k), then M_i(k) on S'(k) + T + T_ssl  (i = 1..N)

A completed stage is recorded in ``<work_dir>/bdl_state.json`` (written atomically) and never rerun;
``--resume`` continues from the first incomplete stage, inside a training stage from its last checkpoint.
Before the first stage the run refuses a config changed since it started (``bdl_config.json``,
``force_resume`` overrides) and scans every data set it will read (``check_data``); every training stage stops at
a non-finite loss (``non_finite_loss``) and names a file that fails to load (docs/reliability.md).
Every M run starts from the same initial weights (release practice, ``m_init='initial'``), with
``m_init='previous'`` from the previous M of the round, or with ``m_init='source_only'`` from M(0).
"""
import copy
import hashlib
import json
import math
import os
import os.path as osp
import socket
import time
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.dist import barrier, broadcast_object_list, get_dist_info, is_main_process
from mmengine.runner import BaseLoop, Runner, find_latest_checkpoint, load_checkpoint
from mmseg.registry import DATASETS, LOOPS, MODELS

from ...apis.config_fingerprint import RunMixError
from ...apis.run_status import format_duration
from ...apis.stage_outputs import (
    atomic_write_json,
    export_segmentor_checkpoint,
    format_results_table,
    save_model_checkpoint,
    save_sample_sheet,
)
from ...models.decode_heads.deeplabv2_head import check_classifier_checkpoint
from ...utils import apply_global_batch_size, cpu_model_wrapper, enable_amp
from ...visualization import stage_vis_backends
from ..runner import CONSOLE, ConciseRunner

# Stage kinds and the config key of their settings in ``train_cfg.stages``.
STAGE_KINDS = ('source_only', 'translation', 'translate', 'adaptation', 'pseudo_label', 'ssl_adaptation')
M_STAGES = ('source_only', 'adaptation', 'ssl_adaptation')
# the target-supervised reference (``train_cfg.references.oracle``): an M trained on the target's labelled train split
ORACLE = 'oracle'
STATE_FILE = 'bdl_state.json'


# the repository's configs/ folder (bdl_mm/engine/loops/ -> repo root)
CONFIGS_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))), 'configs')


def _resolve_config_path(path: str, config_filename: Optional[str]) -> str:
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


def _img_suffix(dataset_cfg) -> str:
    """The image suffix of an MMSeg dataset config: its ``img_suffix``, else its class's default (e.g.
    ``CityscapesDataset``: ``_leftImg8bit.png``, ``BDD100KDataset``: ``.jpg``), else ``.png``."""
    import inspect
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
                img_suffix=_img_suffix(dataset_cfg))


def _same_folder(a: dict, b: dict) -> bool:
    def folder(d):
        return osp.normpath(osp.join(d.get('data_root') or '', d.get('img_dir') or ''))

    return folder(a) == folder(b) and a.get('img_suffix', '.png') == b.get('img_suffix', '.png')


class Stage:
    """One step of Algorithm 1: its unique name (= its folder under the work dir), kind, round k and i, and its
    track: ``''`` for the run itself, else the name of a reference run (``train_cfg.references``: a translation
    baseline in F's place, its stages under ``ref/<track>/``; the oracle is the stage ``ref/oracle``)."""

    def __init__(self, name: str, kind: str, k: int = 0, i: int = 0, track: str = ''):
        self.name, self.kind, self.k, self.i, self.track = name, kind, k, i, track

    @property
    def model_label(self) -> str:
        """The paper's name of the model an M stage produces (Table 2 rows), prefixed by its reference track."""
        if self.kind == 'source_only':
            return 'M(0)'
        if self.kind == 'oracle':
            return 'oracle'
        label = f'M_{self.i}({self.k})'
        return f'{self.track}: {label}' if self.track else label

    def __repr__(self):
        return f'Stage({self.name}, {self.kind})'


@LOOPS.register_module()
class BidirectionalLoop(BaseLoop):
    """Runs Algorithm 1 (K rounds of F then M, N rounds of SSL each) from one config.

    Args:
        runner (Runner): the outer runner, built from the BDL config.
        dataloader (dict): the outer ``train_dataloader`` config (the UDA data of the M stages). It is not
            built here: every stage builds its own.
        K (int): outer rounds (paper: 2).
        N (int): SSL rounds per outer round (paper: 2).
        stages (dict): settings per stage kind, merged into the stage's derived config:
            ``source_only``/``adaptation``/``ssl_adaptation``: config overrides for M training, at least
            ``train_cfg`` (an mmengine train loop config); ``translation``: ``config`` (path of the F config,
            relative to the BDL config's folder or absolute) and ``cfg_options`` (F reads the image folders of
            ``train_dataloader.dataset.source/target`` unless ``cfg_options.train_dataloader.dataset.source/target``
            sets them), or ``type`` (a translation baseline in F's place, no training: ``'FDA'``, ``'Reinhard'``;
            the other keys are its settings, e.g. ``dict(type='FDA', beta=0.01)``; ``perceptual`` does not apply);
            ``translate``: keyword
            arguments of :func:`bdl_mm.apis.translate_dataset`; ``pseudo_label``: keyword arguments of
            :func:`bdl_mm.apis.generate_pseudo_labels` (``mode``, ``threshold`` ...).
        use_translation (bool): ablation switch: ``False`` trains M on the original source (no F).
        use_ssl (bool): ablation switch: ``False`` stops each round after M_0(k).
        perceptual (bool): ablation switch: ``False`` trains F as MMagic's plain CycleGAN.
        adversarial (bool): ablation switch: ``False`` trains M without D_M.
        m_init (str): ``'initial'`` (release): every M run starts from the same initial weights (the
            config's ``load_from``, e.g. the converted DeepLab initialisation, else the seeded random
            initialisation saved at the start); ``'previous'``: M_i(k) starts from M_(i-1)(k) and M_0(k)
            from M(k-1); ``'source_only'``: every adaptation run starts from M(0)'s weights (for M trained from
            random weights, as on the toy: M(0) plays the part of the release's segmentation-pretrained
            initialisation, the COCO DeepLab; M(0) starts from the initial weights, the oracle of ``references``
            from M(0) like the adaptation runs).
        source_only_checkpoint (str, optional): a trained M(0) (BDLSegmentor or plain segmentor
            checkpoint) instead of training it.
        sample_sheets (bool): save a PNG sample sheet per M stage.
        check_data (str): the preflight scan of every data set the plan reads, before the first stage
            (:mod:`bdl_mm.apis.preflight`): ``'header'`` (default), ``'full'`` or ``'none'``
            (``tools/train.py --check-data``).
        force_resume (bool): continue a run whose config changed since it started (``--force-resume``); by
            default such a run is refused with the changed keys (:mod:`bdl_mm.apis.config_fingerprint`).
        non_finite_loss (str | dict): a NaN/inf loss in a training stage: ``'stop'`` (default) stops the stage
            naming the iteration and the term, ``'skip'`` skips the batch and counts it; or
            ``dict(action=..., max_skips=...)`` (:class:`~bdl_mm.engine.hooks.NonFiniteLossHook`).
        references (dict, optional): reference rows of the results table (issue: "does this beat the simple
            thing?"), run after the plan's own stages, resumable like them. ``oracle``: settings of a
            target-supervised M (``ref/oracle``; trained like M(0) on the target's labelled train split: keys as
            ``stages.source_only``, which it defaults to, plus ``dataset`` to name that split; by default the target
            train images with labels from the val set's label folder, its split renamed, e.g. ``gtFine/train``);
            any other key names a track: ``dict(translation=..., K=1, N=..., use_ssl=...)``, the plan run again
            with ``translation`` in place of ``stages.translation`` (a baseline such as ``dict(type='FDA',
            beta=0.01)``, F's own settings, or None: no translation, output-space adaptation alone) under
            ``ref/<track>/``; it starts from this run's M(0) and its K defaults to 1 (a baseline does not depend
            on M). The table then carries the source-only row, the oracle, each track's final model and the share
            of the source-to-oracle gap each closes (``results.md``/``.json``/``.png``).
        diagnostics (bool | dict): per-stage diagnostics that need no target labels
            (:mod:`bdl_mm.evaluation.stage_diagnostics`), in ``<stage>/diagnostics.json`` and the results table:
            after each translate stage, M(k-1)'s mIoU on S and on S' against the source labels and the colour
            statistics distance of S and S' to T; after each pseudo-label stage, the kept ratio per class and, where
            the target train split has labels, the pseudo labels' precision (reported, never used to choose).
            ``dict(num_images=100, target_labels='auto')``: images per consistency check (None: all);
            ``target_labels``: ``'auto'`` (the oracle's labelled target split if its files exist), a dataset
            config, or None. ``False`` turns them off.
        verbose_console (bool): ``False`` (default): a concise console (one ``[BDL]`` line per stage start and
            end, one progress line per log interval; environment, config and mmengine's lines go to each
            stage's log file only: :class:`~bdl_mm.engine.runner.ConciseRunner`); ``True``
            (``tools/train.py --verbose``): mmengine's full console for every stage.
    """

    def __init__(self,
                 runner,
                 dataloader,
                 K: int = 2,
                 N: int = 2,
                 stages: Optional[dict] = None,
                 use_translation: bool = True,
                 use_ssl: bool = True,
                 perceptual: bool = True,
                 adversarial: bool = True,
                 m_init: str = 'initial',
                 source_only_checkpoint: Optional[str] = None,
                 sample_sheets: bool = True,
                 check_data: str = 'header',
                 force_resume: bool = False,
                 non_finite_loss='stop',
                 references: Optional[dict] = None,
                 diagnostics=True,
                 verbose_console: bool = False):
        # BaseLoop.__init__ would build the outer dataloader; the stages build their own.
        self._runner = runner
        self.dataloader = dataloader
        for key, value in (('K', K), ('N', N)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'train_cfg.{key} must be an integer >= 1, got {value!r}')
        if m_init not in ('initial', 'previous', 'source_only'):
            raise ValueError(f"train_cfg.m_init must be 'initial', 'previous' or 'source_only', got {m_init!r}")
        stages = dict(stages or {})
        unknown = sorted(set(stages) - set(STAGE_KINDS))
        if unknown:
            raise ValueError(f'train_cfg.stages.{unknown[0]}: unknown stage name; known: {", ".join(STAGE_KINDS)}')
        needed = {'adaptation'}
        if source_only_checkpoint is None:
            needed.add('source_only')
        if use_translation:
            needed |= {'translation', 'translate'}
        if use_ssl:
            needed |= {'pseudo_label', 'ssl_adaptation'}
        missing = sorted(needed - set(stages) - {'translate', 'pseudo_label'})
        if missing:
            raise ValueError(f'train_cfg.stages.{missing[0]} is missing: this run needs settings for '
                             f'{", ".join(sorted(needed))}')
        self.K, self.N = K, N
        self.stage_cfgs = {kind: ConfigDict(stages.get(kind, {})) for kind in STAGE_KINDS}
        self.use_translation, self.use_ssl = use_translation, use_ssl
        self.perceptual, self.adversarial = perceptual, adversarial
        self.m_init = m_init
        self.source_only_checkpoint = source_only_checkpoint
        self.sample_sheets = sample_sheets
        self.verbose_console = bool(verbose_console)
        self._running: Optional[dict] = None  # the stage in progress, for tools/status.py
        self._run_info: dict = {}
        self._plan_details: Optional[List[dict]] = None
        from ...apis.preflight import CHECK_MODES
        if check_data not in CHECK_MODES:
            raise ValueError(f'train_cfg.check_data must be one of {CHECK_MODES}, got {check_data!r}')
        self.check_data, self.force_resume = check_data, bool(force_resume)
        self.non_finite_loss = dict(non_finite_loss) if isinstance(non_finite_loss, dict) else dict(
            action=non_finite_loss)
        from ..hooks.non_finite_loss_hook import ACTIONS
        if self.non_finite_loss.get('action', 'stop') not in ACTIONS:
            raise ValueError(f'train_cfg.non_finite_loss must be one of {ACTIONS} (or dict(action=..., '
                             f'max_skips=...)), got {non_finite_loss!r}')
        self.work_dir = runner.work_dir
        self.references = self._parse_references(references)
        if diagnostics is True:
            diagnostics = {}
        if diagnostics not in (False, None) and not isinstance(diagnostics, dict):
            raise ValueError(f'train_cfg.diagnostics must be True, False or a dict, got {diagnostics!r}')
        self.diagnostics = None if diagnostics in (False, None) else dict(
            dict(num_images=100, target_labels='auto'), **diagnostics)
        if source_only_checkpoint is not None:
            check_classifier_checkpoint(self.outer_cfg.model, source_only_checkpoint,
                                        'train_cfg.source_only_checkpoint')
        self.plan = self._make_plan()
        self._iter = 0
        self.state: Dict[str, dict] = {}
        self._check_stage_configs()

    # ------------------------------------------------------------------ plan and configs
    def _parse_references(self, references: Optional[dict]) -> dict:
        """``train_cfg.references`` -> ``dict(oracle=ConfigDict | None, tracks={name: ConfigDict(translation, K, N,
        use_ssl)})``, each setting checked (see the class docstring)."""
        references = dict(references or {})
        oracle = references.pop(ORACLE, None)
        if oracle is not None and not isinstance(oracle, dict):
            raise ValueError(f'train_cfg.references.oracle must be a dict of settings (or None), got {oracle!r}')
        tracks = {}
        for name, track in references.items():
            key = f'train_cfg.references.{name}'
            if not isinstance(name, str) or not name.replace('_', '').replace('-', '').isalnum():
                raise ValueError(f'{key}: a track name must be letters, digits, - or _')
            if not isinstance(track, dict) or 'translation' not in track:
                raise ValueError(f'{key} must be a dict with a translation (a baseline such as dict(type=\'FDA\'), '
                                 f'F\'s settings, or None), got {track!r}')
            unknown = sorted(set(track) - {'translation', 'K', 'N', 'use_ssl'})
            if unknown:
                raise ValueError(f'{key}.{unknown[0]}: unknown key; known: translation, K, N, use_ssl')
            translation = track['translation']
            if translation is not None and not isinstance(translation, dict):
                raise ValueError(f'{key}.translation must be a dict or None, got {translation!r}')
            default_k = 1 if translation is None or translation.get('type') is not None else self.K
            settings = ConfigDict(translation=None if translation is None else ConfigDict(translation),
                                  K=track.get('K', default_k), N=track.get('N', self.N),
                                  use_ssl=bool(track.get('use_ssl', self.use_ssl)))
            for k in ('K', 'N'):
                if not isinstance(settings[k], int) or settings[k] < 1:
                    raise ValueError(f'{key}.{k} must be an integer >= 1, got {settings[k]!r}')
            tracks[name] = settings
        return dict(oracle=None if oracle is None else ConfigDict(oracle), tracks=tracks)

    def _make_plan(self) -> List[Stage]:
        plan = [Stage('m0', 'source_only')]
        plan += self._track_plan('', self.K, self.N, self.use_translation, self.use_ssl)
        if self.references['oracle'] is not None:
            plan.append(Stage(f'ref/{ORACLE}', ORACLE))
        for name, track in self.references['tracks'].items():
            plan += self._track_plan(name, track.K, track.N, track.translation is not None, track.use_ssl)
        return plan

    @staticmethod
    def _track_plan(track: str, K: int, N: int, use_translation: bool, use_ssl: bool) -> List[Stage]:
        """The stages after M(0) of the run (``track=''``) or of a reference track (under ``ref/<track>/``)."""
        prefix = f'ref/{track}/' if track else ''
        plan = []
        for k in range(1, K + 1):
            if use_translation:
                plan += [Stage(f'{prefix}k{k}/translation', 'translation', k, track=track),
                         Stage(f'{prefix}k{k}/translate', 'translate', k, track=track)]
            plan.append(Stage(f'{prefix}k{k}/m0', 'adaptation', k, 0, track=track))
            if use_ssl:
                for i in range(1, N + 1):
                    plan += [Stage(f'{prefix}k{k}/ssl{i}', 'pseudo_label', k, i, track=track),
                             Stage(f'{prefix}k{k}/m{i}', 'ssl_adaptation', k, i, track=track)]
        return plan

    def _translation_settings(self, stage: Optional[Stage] = None) -> Optional[ConfigDict]:
        """The translation settings of a stage's track: ``stages.translation`` for the run itself, the track's
        ``translation`` for a reference track (None: that track does not translate)."""
        if stage is None or not stage.track:
            return self.stage_cfgs['translation']
        return self.references['tracks'][stage.track].translation

    def _track_uses_ssl(self, stage: Stage) -> bool:
        return self.use_ssl if not stage.track else self.references['tracks'][stage.track].use_ssl

    def _track_n(self, stage: Stage) -> int:
        return self.N if not stage.track else self.references['tracks'][stage.track].N

    def _oracle_dataset(self) -> ConfigDict:
        """The target's labelled train split for the oracle: ``references.oracle.dataset``, else derived from the
        target train set (its images, data root and training resize) and the val set (dataset type, label folder
        with the target's split name, e.g. ``gtFine/val`` -> ``gtFine/train``, label suffix), loading the labels
        before the resize as the source pipeline does."""
        settings = self.references['oracle'] or ConfigDict()
        if settings.get('dataset') is not None:
            return copy.deepcopy(settings.dataset)
        target = copy.deepcopy(self.outer_cfg.train_dataloader.dataset.get('target'))
        val = copy.deepcopy((self.outer_cfg.get('val_dataloader') or {}).get('dataset'))
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

    # progress as seen by mmengine's hooks: one "iteration" per stage
    @property
    def max_iters(self):
        return len(self.plan)

    @property
    def iter(self):
        return self._iter

    @property
    def epoch(self):
        return 0

    @property
    def max_epochs(self):
        return 1

    @property
    def outer_cfg(self) -> Config:
        return self.runner.cfg

    def _stage_dir(self, stage: Stage) -> str:
        return osp.join(self.work_dir, stage.name)

    def _m_stage_cfg(self, stage: Stage, translated_dir=None, pseudo_label_dir=None, load_from=None) -> Config:
        """The config of an M training stage, derived from the outer BDL config."""
        cfg = copy.deepcopy(self.outer_cfg)
        for key in ('train_cfg', 'work_dir', 'resume', 'load_from', 'experiment_name'):
            cfg.pop(key, None)
        if stage.kind == ORACLE:  # trained like M(0) unless the oracle's settings say otherwise
            overrides = Config(copy.deepcopy(self.stage_cfgs['source_only']).to_dict())
            overrides.merge_from_dict({k: v for k, v in (self.references['oracle'] or {}).items() if k != 'dataset'})
            overrides = overrides._cfg_dict
        else:
            overrides = copy.deepcopy(self.stage_cfgs[stage.kind])
        cfg.merge_from_dict(overrides.to_dict(), allow_list_keys=True)
        cfg.model.adversarial = bool(self.adversarial) and stage.kind not in ('source_only', ORACLE)
        dataset = cfg.train_dataloader.dataset
        if stage.kind == ORACLE:  # the target's labelled train split, segmentation loss alone
            cfg.train_dataloader.dataset = self._oracle_dataset()
        elif stage.kind == 'source_only':
            # M(0) sees the labelled source only; BDLSegmentor then trains with the segmentation loss alone.
            cfg.train_dataloader.dataset = dataset.source
        else:
            if translated_dir is not None:
                dataset.source.data_prefix = dict(dataset.source.get('data_prefix', {}), img_path=translated_dir)
            dataset.pseudo_label_dir = pseudo_label_dir
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='StageMetricsHook')]
        self._set_stage_run(cfg, stage)
        cfg.load_from = load_from
        return cfg

    def _set_stage_run(self, cfg: Config, stage: Stage):
        """Work dir, experiment name and launcher of a stage's own runner."""
        cfg.work_dir = self._stage_dir(stage)
        # unique per stage: mmengine keys its logger, message hub and visualizer instances by this name
        cfg.experiment_name = f'{osp.basename(osp.normpath(self.work_dir))}_{stage.name.replace("/", "_")}'
        cfg.launcher = self.outer_cfg.get('launcher', 'none')

    def _m_image_folders(self) -> dict:
        """``{'source': ..., 'target': ...}``: the image folders of M's UDA training data (:func:`image_folder`), the
        folders F (or a baseline) learns from by default."""
        dataset = self.outer_cfg.train_dataloader.dataset
        return {side: image_folder(dataset[side]) for side in ('source', 'target') if dataset.get(side)}

    @staticmethod
    def _translation_key(stage: Optional[Stage] = None) -> str:
        """The config key of a stage's translation settings."""
        return f'train_cfg.references.{stage.track}.translation' if stage is not None and stage.track else \
            'train_cfg.stages.translation'

    def _translation_baseline(self, stage: Optional[Stage] = None) -> Optional[dict]:
        """The baseline in F's place, ``train_cfg.stages.translation.type`` (or a reference track's
        ``translation.type``) with the other keys as its settings (``config`` and ``cfg_options``, F's, are
        ignored); None without ``type`` (F is trained)."""
        settings = self._translation_settings(stage) or ConfigDict()
        if settings.get('type') is None:
            return None
        from ...models.translators.translation_baseline import baseline_class, baseline_types
        key = self._translation_key(stage)
        if baseline_class(settings['type']) is None:
            raise ValueError(f'{key}.type: unknown translation type {settings["type"]!r}; '
                             f'known: {", ".join(baseline_types())} (or no type: F, trained from {key}.config)')
        return {k: v for k, v in settings.to_dict().items() if k not in ('config', 'cfg_options')}

    def _translation_cfg(self, stage: Stage, m_checkpoint: Optional[str]) -> Config:
        """F's config: its file (``stages.translation.config``), reading M's source and target image folders
        (``train_dataloader.dataset.{source,target}`` of the BDL config, unless ``stages.translation.cfg_options``
        sets them), with M(k-1) for its perceptual loss. For a baseline (``stages.translation.type``): its settings
        as ``model`` and the folders it reads as ``train_dataloader.dataset``."""
        settings = copy.deepcopy(self._translation_settings(stage) or ConfigDict())
        folders = self._m_image_folders()
        baseline = self._translation_baseline(stage)
        if baseline is not None:
            cfg = Config(dict(model=baseline, train_dataloader=dict(dataset=dict(
                type='mmagic.UnpairedTranslationDataset', pipeline=[], **folders))))
            self._set_stage_run(cfg, stage)
            return cfg
        path = settings.get('config')
        if path is None:
            raise ValueError(f'{self._translation_key(stage)}.config: the F config path is missing')
        path = _resolve_config_path(path, self.outer_cfg.filename)
        cfg = Config.fromfile(path)
        dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
        if str(dataset.get('type', '')).endswith('UnpairedTranslationDataset'):
            for side, folder in folders.items():  # M's folders (the file's spelling is kept where it is the same)
                if not _same_folder(dataset.get(side) or {}, folder):
                    dataset[side] = folder
        if settings.get('cfg_options'):
            cfg.merge_from_dict(settings.cfg_options.to_dict(), allow_list_keys=True)
        # F's perceptual loss runs the current M (architecture from the BDL config, weights from M(k-1)), fed in M's
        # input format (its data_preprocessor) unless F's config states one (checked against M at build).
        from ...apis.m_model import m_input_format, m_model_cfg
        m_cfg = m_model_cfg(self.outer_cfg)
        cfg.model.segmentor = dict(cfg.model.get('segmentor', {}), config=m_cfg, checkpoint=m_checkpoint)
        if cfg.model.get('seg_input') is None:
            cfg.model.seg_input = m_input_format(m_cfg)
        if not self.perceptual:  # ablation: MMagic's plain CycleGAN (PerceptualCycleGAN needs no M then)
            cfg.model.perceptual_loss = None
            cfg.model.segmentor = None
        self._set_stage_run(cfg, stage)
        apply_global_batch_size(cfg, get_dist_info()[1])
        if cfg.launcher == 'pytorch':
            cpu_model_wrapper(cfg)
        if self._uses_amp():
            enable_amp(cfg)
        if 'env_cfg' in self.outer_cfg:
            cfg.env_cfg = copy.deepcopy(self.outer_cfg.env_cfg)
        cfg.pop('load_from', None)
        return cfg

    def _run_name(self) -> str:
        """The run's own row in the reference table: its baseline's type where one is in F's place, else BDL."""
        baseline = self._translation_baseline() if self.use_translation else None
        return baseline['type'] if baseline else 'BDL'

    def _uses_amp(self) -> bool:
        """``tools/train.py --amp`` switched the outer wrappers: F's config (read from its own file) follows."""
        return 'AmpOptimWrapper' in str(self.outer_cfg.get('optim_wrapper', ''))

    def _check_stage_configs(self):
        """Derive and build every stage's model before any training, naming the key that fails."""
        from ...apis.m_model import check_m_classes
        check_m_classes(self.outer_cfg)  # M predicts the dataset's classes (one line naming the key)
        built = set()  # stages usually share one model config: build each distinct one once
        # one stage per kind, and per track for the translation (each track has its own)
        checks = {(s.kind, s.track if s.kind == 'translation' else ''): s for s in self.plan}
        for (kind, track) in checks:
            if kind in ('translate', 'pseudo_label'):
                continue
            check = Stage('check', kind, track=track)
            key = self._translation_key(check) if kind == 'translation' else (
                'train_cfg.references.oracle' if kind == ORACLE else f'train_cfg.stages.{kind}')
            if kind == 'translation' and self._translation_baseline(check) is not None:  # unknown type fails here
                from ...models.translators.translation_baseline import build_baseline
                try:
                    build_baseline(self._translation_cfg(check, None).model)
                except Exception as e:  # noqa: BLE001 - re-raised with the key that failed
                    raise ValueError(f'{key}: the translation baseline does not build: {type(e).__name__}: {e}') from e
                continue
            try:
                if kind == 'translation':
                    cfg = self._translation_cfg(check, None)
                    from mmagic.registry import MODELS as registry
                else:
                    cfg = self._m_stage_cfg(check)
                    if 'train_cfg' not in cfg:
                        raise KeyError('train_cfg (the stage\'s training loop) is missing')
                    registry = MODELS
                key_repr = repr(cfg.model)
                if key_repr not in built:
                    registry.build(cfg.model)
                    built.add(key_repr)
            except Exception as e:  # noqa: BLE001 - re-raised with the key that failed
                raise ValueError(f'{key}: the stage config does not build: {type(e).__name__}: {e}') from e

    # ------------------------------------------------------------------ state
    def _state_path(self):
        return osp.join(self.work_dir, STATE_FILE)

    def _load_state(self):
        path = self._state_path()
        state = {}
        if osp.isfile(path):
            with open(path) as f:
                state = json.load(f)
        if state.get('stages') and not self.runner._resume:
            raise RunMixError(f'{self.work_dir} holds a BDL run with completed stages '
                               f'({", ".join(state["stages"])}); pass --resume to continue it or use another '
                               '--work-dir')
        plan_names = [s.name for s in self.plan]
        unknown = [name for name in state.get('stages', {}) if name not in plan_names]
        if unknown:
            raise RunMixError(f'{path} records stage {unknown[0]!r} that this config does not plan; the config '
                               'changed since the run started: use another --work-dir')
        self.state = state.get('stages', {})

    def _save_state(self):
        if is_main_process():
            atomic_write_json(self._state_path(), dict(plan=[s.name for s in self.plan], stages=self.state,
                                                       **self._progress_state()))
        barrier()

    def _check_before_stages(self):
        """Before anything trains: refuse a config changed since the run started (unless ``force_resume``), scan
        every data set the plan reads (``check_data``), then record the config's fingerprint."""
        from ...apis.config_fingerprint import check_config_unchanged, config_fingerprint, record_fingerprint
        from ...apis.preflight import preflight
        logger = self.runner.logger
        fingerprint = config_fingerprint(self)
        changes = check_config_unchanged(self.work_dir, fingerprint, force=self.force_resume)
        if changes:
            logger.warning(f'[BDL] --force-resume: continuing with a config changed since the run started: '
                           f'{"; ".join(changes)}')
        preflight(self, self.check_data, logger=logger)
        if changes is None and self.state:
            logger.warning(f'[BDL] {self.work_dir} holds no config fingerprint (run started by an older version): '
                           'recording the current config')
        if is_main_process() and (changes is None or changes):
            record_fingerprint(self.work_dir, fingerprint, forced=changes or None)
        barrier()

    # ------------------------------------------------------------------ stages
    def _run_child(self, cfg: Config) -> Runner:
        stage_dir = cfg.work_dir
        # (mmengine's find_latest_checkpoint prints a line when there is none: look for its file first)
        cfg.resume = (osp.isfile(osp.join(stage_dir, 'last_checkpoint'))
                      and find_latest_checkpoint(stage_dir) is not None)
        if cfg.resume:
            cfg.load_from = None  # resume the interrupted stage from its own last checkpoint
        # a NaN/inf loss stops the stage (or skips the batch); a file that fails to load is named; a resumed stage
        # gets the random generators' states of its checkpoint back (docs/reliability.md, section 4)
        stage_name = osp.relpath(stage_dir, self.work_dir)
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
            dict(type='NonFiniteLossHook', stage=stage_name, **self.non_finite_loss), dict(type='DataFileErrorHook'),
            dict(type='RandomStateCheckpointHook')]
        child = self._build_child(cfg)
        child.train()
        return child

    def _initial_weights(self) -> str:
        """Weights every M run starts from: the outer model after its init (and ``load_from``)."""
        path = osp.join(self.work_dir, 'init_weights.pth')
        if not osp.isfile(path):
            if is_main_process():
                save_model_checkpoint(self.runner.model, path)
            barrier()
        return path

    def _train_m(self, stage: Stage, translated_dir, pseudo_label_dir, load_from) -> dict:
        cfg = self._m_stage_cfg(stage, translated_dir, pseudo_label_dir, load_from)
        child = self._run_child(cfg)
        # mmengine validates after the last iteration; StageMetricsHook kept the result
        metrics = child.message_hub.get_info('bdl/last_val_metrics') or {}
        if not metrics and child.val_loop is not None:
            metrics = child.val_loop.run()
        return self._finish_m(child, cfg, metrics, translated_dir=translated_dir, pseudo_label_dir=pseudo_label_dir)

    def _finish_m(self, child: Runner, cfg: Config, metrics: dict, **extra) -> dict:
        """Save the M stage's model (whole, and M alone for F and SSL), its sample sheet; the stage's record."""
        model = child.model.module if hasattr(child.model, 'module') else child.model
        ckpt = osp.join(cfg.work_dir, 'final_model.pth')
        segmentor_ckpt = osp.join(cfg.work_dir, 'segmentor.pth')
        if is_main_process():
            save_model_checkpoint(child.model, ckpt)
            export_segmentor_checkpoint(model, segmentor_ckpt)
            if self.sample_sheets and 'val_dataloader' in cfg:
                save_sample_sheet(model, cfg, osp.join(cfg.work_dir, 'samples.png'),
                                  source_cfg=self.outer_cfg.train_dataloader.dataset.source,
                                  translated_dir=extra.get('translated_dir'),
                                  pseudo_label_dir=extra.get('pseudo_label_dir'))
        barrier()
        return dict(checkpoint=ckpt, segmentor_checkpoint=segmentor_ckpt,
                    metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, **extra)

    def _train_f(self, stage: Stage, m_checkpoint: str) -> dict:
        if self._translation_baseline(stage) is not None:
            return self._fit_baseline(stage)
        cfg = self._translation_cfg(stage, m_checkpoint)
        config_path = osp.join(cfg.work_dir, 'translation_config.py')
        if is_main_process():
            os.makedirs(cfg.work_dir, exist_ok=True)
            cfg.dump(config_path)  # translate stage and later users rebuild F from this exact config
        # F's image pools go into its checkpoints and come back on resume (not in the state dict)
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='ImagePoolCheckpointHook')]
        child = self._run_child(cfg)
        ckpt = osp.join(cfg.work_dir, 'final_model.pth')
        if is_main_process():
            save_model_checkpoint(child.model, ckpt)
        barrier()
        return dict(checkpoint=ckpt, config=config_path, perceptual_m=m_checkpoint)

    def _fit_baseline(self, stage: Stage) -> dict:
        """A baseline in F's place (``stages.translation.type``): no training; fitted on M's target images (main
        process) and recorded, atomically, in ``<stage>/translator.json`` (type, settings, fitted state) beside
        ``translation_config.py``."""
        from ...datasets.unpaired_translation_dataset import UnpairedTranslationDataset
        from ...models.translators.translation_baseline import build_baseline
        cfg = self._translation_cfg(stage, None)
        record_path = osp.join(cfg.work_dir, 'translator.json')
        config_path = osp.join(cfg.work_dir, 'translation_config.py')
        if is_main_process():
            data = cfg.train_dataloader.dataset
            targets = [info['path'] for info in UnpairedTranslationDataset(data.source, data.target).data_infos_b]
            baseline = build_baseline(cfg.model)
            baseline.fit(targets)
            os.makedirs(cfg.work_dir, exist_ok=True)
            cfg.dump(config_path)
            atomic_write_json(record_path, dict(baseline.to_record(), target_folder=data.target.to_dict(),
                                                num_target_images=len(targets)))
        barrier()
        return dict(translator=record_path, config=config_path, baseline=cfg.model['type'])

    def _translate(self, stage: Stage, f_result: dict) -> dict:
        from ...apis import load_translator, translate_dataset
        from ...apis.translate import training_width
        source = image_folder(self.outer_cfg.train_dataloader.dataset.source)
        src_dir = osp.join(source['data_root'], source['img_dir'])
        out_dir = self._stage_dir(stage)
        rank, world_size = get_dist_info()
        settings = dict(img_suffix=source['img_suffix'], progress=is_main_process())
        settings.update(self.stage_cfgs['translate'].to_dict())
        extra = {}
        if f_result.get('translator'):  # a baseline: image by image, at the source's resolution
            from ...models.translators.translation_baseline import baseline_from_record
            with open(f_result['translator']) as f:
                record = json.load(f)
            translator = baseline_from_record(record)
            what = [record, {k: v for k, v in settings.items() if k != 'progress'}]  # the same on every rank
            what = json.dumps(what, sort_keys=True, default=str).encode()
            extra['translator_digest'] = hashlib.sha256(what).hexdigest()
            for earlier in self.plan:  # S' of an earlier round, made by the same fitted baseline: reused (completed)
                done = self.state.get(earlier.name) or {}
                if (earlier.kind == 'translate' and earlier.k < stage.k and done.get('status') == 'done'
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

    def _pseudo_label(self, stage: Stage, m_result: dict) -> dict:
        from ...apis import generate_pseudo_labels
        out_dir = self._stage_dir(stage)
        settings = self.stage_cfgs['pseudo_label'].to_dict()
        from ...apis.m_model import m_model_cfg
        model = MODELS.build(m_model_cfg(self.outer_cfg))  # M with the data preprocessor it trains with
        load_checkpoint(model, m_result['segmentor_checkpoint'], map_location='cpu', logger='silent')
        if torch.cuda.is_available():
            model = model.cuda()
        target = copy.deepcopy(self.outer_cfg.train_dataloader.dataset.target)
        summary = generate_pseudo_labels(model, target, out_dir, **settings)
        barrier()
        return dict(pseudo_label_dir=osp.abspath(out_dir),
                    kept_ratio=summary.get('kept_ratio'), summary=osp.join(out_dir, 'summary.json'))

    # ------------------------------------------------------------------ diagnostics (no target labels needed)
    def _translation_diagnostics(self, stage: Stage, result: dict, m_prev: dict) -> Optional[dict]:
        """M(k-1) on S and S' against the source labels; colour statistics of S, S' and T; edges of S kept in S'
        (main process)."""
        from ...apis.translate import list_images
        from ...evaluation.stage_diagnostics import (
            edge_consistency,
            image_statistics,
            statistics_distance,
            subset,
            translation_consistency,
        )
        out = None
        if is_main_process():
            num = self.diagnostics['num_images']
            dataset = self.outer_cfg.train_dataloader.dataset
            source = image_folder(dataset.source)
            target = image_folder(dataset.target)
            src_dir = osp.join(source['data_root'], source['img_dir'])
            tgt_dir = osp.join(target['data_root'], target['img_dir'])
            rels = subset(list_images(src_dir, source['img_suffix']), num)
            stats = dict(source=image_statistics([osp.join(src_dir, r) for r in rels]),
                         translated=image_statistics([osp.join(result['translated_dir'], r) for r in rels]),
                         target=image_statistics([osp.join(tgt_dir, r) for r in
                                                  subset(list_images(tgt_dir, target['img_suffix']), num)]))
            segmentor = self._load_segmentor(m_prev['segmentor_checkpoint'])
            num_classes = segmentor.decode_head.num_classes
            out = dict(model=f'M({stage.k - 1})' if not stage.track else f'{stage.track}: M({stage.k - 1})',
                       **translation_consistency(segmentor, dataset.source, result['translated_dir'], num_classes,
                                                 num),
                       colour_distance_source_to_target=statistics_distance(stats['source'], stats['target']),
                       colour_distance_translated_to_target=statistics_distance(stats['translated'],
                                                                                stats['target']),
                       edge_consistency=edge_consistency([osp.join(src_dir, r) for r in rels],
                                                         [osp.join(result['translated_dir'], r) for r in rels]),
                       statistics=stats)
            atomic_write_json(osp.join(self._stage_dir(stage), 'diagnostics.json'), out)
        barrier()
        return out

    def _pseudo_label_diagnostics(self, stage: Stage, result: dict) -> Optional[dict]:
        """Kept ratio per class; the precision of the kept pixels where the target train split has labels."""
        from ...evaluation.stage_diagnostics import pseudo_label_diagnostics
        out = None
        if is_main_process():
            with open(result['summary']) as f:
                summary = json.load(f)
            classes = summary.get('classes') or []
            out = pseudo_label_diagnostics(result['pseudo_label_dir'], summary, classes,
                                           self._labelled_target_dataset())
            atomic_write_json(osp.join(self._stage_dir(stage), 'diagnostics.json'), out)
        barrier()
        return out

    def _labelled_target_dataset(self) -> Optional[ConfigDict]:
        """``diagnostics.target_labels``: a dataset config; ``'auto'``: the oracle's labelled target train split
        when every label file exists (else None: no precision); None."""
        setting = self.diagnostics.get('target_labels')
        if setting is None or isinstance(setting, dict):
            return setting
        try:
            dataset_cfg = self._oracle_dataset()
            cfg = copy.deepcopy(dataset_cfg)
            cfg.pipeline = []
            dataset = DATASETS.build(cfg)
            paths = [dataset.get_data_info(i).get('seg_map_path') for i in range(len(dataset))]
        except Exception:  # noqa: BLE001 - no labelled target split: the precision is left out
            return None
        return dataset_cfg if paths and all(p and osp.isfile(p) for p in paths) else None

    def _load_segmentor(self, checkpoint: str):
        model = MODELS.build(copy.deepcopy(self.outer_cfg.model.segmentor))
        load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
        return model.cuda() if torch.cuda.is_available() else model

    # ------------------------------------------------------------------ main
    def run(self):
        self.runner.call_hook('before_train')
        self._load_state()
        self._check_before_stages()  # config unchanged since the run started, preflight data scan
        init_weights = self._initial_weights()
        logger = self.runner.logger
        start = time.time()
        # per track (the run itself: '', each reference track: its name): the last M stage's result, M(k) per
        # round (M(0) is shared), the last F / baseline, translated source and pseudo labels
        tracks: Dict[str, dict] = {}

        def track_of(stage: Stage) -> dict:
            if stage.track not in tracks:
                m0 = tracks[''].get('m_of_round', {}).get(0) if '' in tracks else None
                tracks[stage.track] = dict(prev_m=m0, m_of_round={0: m0}, translated_dir=None, f_result=None,
                                           pseudo=None)
            return tracks[stage.track]

        track_of(Stage('m0', 'source_only'))
        self._run_info = dict(started=start, finished=None)
        logger.info(f'[BDL] Algorithm 1: {len(self.plan)} stages in {self.work_dir}; full log: '
                    f'{getattr(logger, "log_file", None)}; status: python tools/status.py {self.work_dir}',
                    extra=CONSOLE)
        for idx, stage in enumerate(self.plan):
            self._iter = idx
            done = self.state.get(stage.name)
            if done is not None and done.get('status') == 'done':
                logger.info(f'[BDL] stage {stage.name} already completed: skipped', extra=CONSOLE)
                result = done
            else:
                logger.info(f'[BDL] stage {idx + 1}/{len(self.plan)} {stage.name}: {self._describe(stage)} -> '
                            f'{self._stage_dir(stage)}', extra=CONSOLE)
                t0 = time.time()
                self._running = dict(stage=stage.name, started=t0, pid=os.getpid(), host=socket.gethostname())
                self._save_state()
                ctx = track_of(stage)
                result = self._run_stage(stage, init_weights, ctx['prev_m'], ctx['m_of_round'], ctx['translated_dir'],
                                         ctx['f_result'], ctx['pseudo'])
                result.update(status='done', kind=stage.kind, seconds=round(time.time() - t0, 1))
                if stage.kind in M_STAGES + (ORACLE, ):
                    result['label'] = stage.model_label
                # all ranks agree on the recorded result (paths and metrics come from rank 0)
                obj = [result]
                broadcast_object_list(obj)
                result = obj[0]
                self.state[stage.name] = result
                self._running = None
                self._save_state()
                if is_main_process():  # live results: the table so far, after every stage
                    format_results_table(self.plan, self.state, self.outer_cfg, self.work_dir, self._run_name())
                logger.info(self._end_line(idx, stage, result), extra=CONSOLE)
            ctx = track_of(stage)
            if stage.kind == 'source_only':  # M(0): the start of every track
                for other in tracks.values():
                    other['prev_m'] = other['m_of_round'][0] = result
            elif stage.kind in M_STAGES:
                ctx['prev_m'] = result
                if stage.i == (self._track_n(stage) if self._track_uses_ssl(stage) else 0):
                    ctx['m_of_round'][stage.k] = result
                ctx['pseudo'] = None
            elif stage.kind == 'translation':
                ctx['f_result'] = result
            elif stage.kind == 'translate':
                ctx['translated_dir'] = result['translated_dir']
            elif stage.kind == 'pseudo_label':
                ctx['pseudo'] = result
        self._iter = len(self.plan)
        final = tracks['']['m_of_round'].get(self.K) or tracks['']['prev_m']
        load_checkpoint(self.runner.model.module if hasattr(self.runner.model, 'module') else self.runner.model,
                        final['checkpoint'], map_location='cpu', logger='silent')
        if is_main_process():
            save_model_checkpoint(self.runner.model, osp.join(self.work_dir, 'final_model.pth'),
                                  meta=dict(stage=final.get('label'), source_checkpoint=final['checkpoint']))
            table = format_results_table(self.plan, self.state, self.outer_cfg, self.work_dir, self._run_name())
            logger.info('[BDL] results\n' + table, extra=CONSOLE)  # printed once
        self._run_info['finished'] = time.time()
        self._save_state()
        logger.info(f'[BDL] finished {len(self.plan)} stages in {format_duration(time.time() - start)}; final model: '
                    f'{osp.join(self.work_dir, "final_model.pth")}', extra=CONSOLE)
        self.runner.call_hook('after_train')
        return self.runner.model

    def _run_stage(self, stage, init_weights, prev_m, m_of_round, translated_dir, f_result, pseudo) -> dict:
        if stage.kind == 'source_only':
            if self.source_only_checkpoint is not None:
                return self._import_source_only(stage)
            return self._train_m(stage, None, None, init_weights)
        if stage.kind == ORACLE:  # target-supervised reference, from the weights every adaptation run starts from
            start = m_of_round[0]['checkpoint'] if self.m_init == 'source_only' else init_weights
            return self._train_m(stage, None, None, start)
        if stage.kind == 'translation':
            return self._train_f(stage, m_of_round[stage.k - 1]['segmentor_checkpoint'])
        if stage.kind == 'translate':
            result = self._translate(stage, f_result)
            if self.diagnostics is not None:
                result['diagnostics'] = self._translation_diagnostics(stage, result, m_of_round[stage.k - 1])
            return result
        if stage.kind == 'pseudo_label':
            result = self._pseudo_label(stage, prev_m)
            if self.diagnostics is not None:
                result['diagnostics'] = self._pseudo_label_diagnostics(stage, result)
            return result
        # adaptation / ssl_adaptation
        if self.m_init == 'initial':
            load_from = init_weights
        elif self.m_init == 'source_only':
            load_from = m_of_round[0]['checkpoint']
        else:
            previous = prev_m if stage.kind == 'ssl_adaptation' else m_of_round[stage.k - 1]
            load_from = previous['checkpoint']
        result = self._train_m(stage, translated_dir, pseudo['pseudo_label_dir'] if pseudo else None, load_from)
        if pseudo is not None:
            result['kept_ratio'] = pseudo.get('kept_ratio')
        return result

    def _import_source_only(self, stage: Stage) -> dict:
        """Use a trained M(0) checkpoint (BDLSegmentor or plain segmentor keys); evaluated and exported like a
        trained one."""
        cfg = self._m_stage_cfg(stage)
        for key in ('train_cfg', 'train_dataloader', 'optim_wrapper', 'param_scheduler'):
            cfg.pop(key, None)
        child = self._build_child(cfg)
        # a plain segmentor checkpoint gets the `segmentor.` prefix of BDLSegmentor's keys
        child.load_checkpoint(self.source_only_checkpoint,
                              revise_keys=[(r'^module\.', ''), (r'^(?!segmentor\.|discriminator\.)', 'segmentor.')])
        metrics = child.val()
        return self._finish_m(child, cfg, metrics, imported=self.source_only_checkpoint)

    # ------------------------------------------------------------------ console, status, visualisation
    def _build_child(self, cfg: Config) -> Runner:
        """A stage's runner: a concise console unless ``verbose_console`` (then mmengine's), a visualizer of its
        own, and its vis backends other than ``LocalVisBackend`` (TensorBoard, W&B ...) wrapped in
        ``StageVisBackend``: all stages write to ``<work_dir>/vis_data``, tagged ``<stage>/<scalar>``."""
        stage_name = osp.relpath(cfg.work_dir, self.work_dir).replace(os.sep, '/')
        if cfg.get('visualizer') is not None:
            vis = copy.deepcopy(cfg.visualizer)
            # mmengine keys visualizers by name: a fixed name hands every stage the first runner's instance (and
            # its folder); without one, each runner names its own after its experiment name
            vis.pop('name', None)
            vis['vis_backends'] = stage_vis_backends(vis.get('vis_backends'), stage_name, self.work_dir)
            cfg.visualizer = vis
        if self.verbose_console:
            return Runner.from_cfg(cfg)
        if cfg.get('train_cfg') is not None:
            cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='StageProgressHook', stage=stage_name)]
        return ConciseRunner.from_cfg(cfg)

    def _describe(self, stage: Stage) -> str:
        """What a stage trains or makes, in the paper's notation."""
        k, i = stage.k, stage.i
        translates = self._translation_settings(stage) is not None and (stage.track or self.use_translation)
        source = f"S'({k})" if translates else 'S'
        m = f'{stage.track}: ' if stage.track else ''  # a reference track's models are named after it
        if stage.kind == 'source_only':
            return 'M(0) imported, evaluated' if self.source_only_checkpoint else 'M(0) on S'
        if stage.kind == ORACLE:
            return 'oracle: M on the target\'s labelled train split (reference)'
        baseline = self._translation_baseline(stage) if translates else None
        if stage.kind == 'translation':
            if baseline is not None:
                settings = ', '.join(f'{key}={value}' for key, value in baseline.items() if key != 'type')
                return f'{m}{baseline["type"]}({settings}) fitted on T, in F({k})\'s place (no training)'
            return (f'{m}F({k}), perceptual loss through {m}M({k - 1})' if self.perceptual else
                    f'{m}F({k}), plain CycleGAN')
        if stage.kind == 'translate':
            return f"{m}S'({k}) = {baseline['type'] if baseline else 'F'}({k})(S)"
        if stage.kind == 'adaptation':
            return f'{m}M_0({k}) on {source} + T'
        if stage.kind == 'pseudo_label':
            return f'{m}pseudo labels of T from M_{i - 1}({k})'
        return f'{m}M_{i}({k}) on {source} + T + pseudo labels'

    def _end_line(self, idx: int, stage: Stage, result: dict) -> str:
        line = f'[BDL] stage {idx + 1}/{len(self.plan)} {stage.name} done in {format_duration(result.get("seconds"))}'
        metrics = result.get('metrics') or {}
        if 'mIoU' in metrics:
            line += f': {stage.model_label} mIoU ' + ', '.join(
                f'{key} {metrics[key]:.1f}' if key != 'mIoU' else f'{metrics[key]:.1f}'
                for key in ('mIoU', 'mIoU16', 'mIoU13') if key in metrics)
        if stage.kind == 'pseudo_label' and result.get('kept_ratio') is not None:
            line += f': kept {100 * result["kept_ratio"]:.1f}% of the target pixels'
        if stage.kind == 'translate' and isinstance(result.get('counts'), dict):
            line += f': {result["counts"].get("written", 0)} images translated'
        return line

    def _progress_state(self) -> dict:
        """What ``tools/status.py`` reads beside the completed stages (``bdl_state.json``)."""
        if self._plan_details is None:
            self._plan_details = [dict(name=s.name, kind=s.kind, label=self._label(s), what=self._describe(s),
                                       **self._planned_units(s)) for s in self.plan]
        last_m = [s for s in self.plan if s.kind in M_STAGES and not s.track][-1]
        return dict(plan_details=self._plan_details, running=self._running, run=self._run_info,
                    final_model=dict(path=osp.abspath(osp.join(self.work_dir, 'final_model.pth')), stage=last_m.name,
                                     label=last_m.model_label))

    @staticmethod
    def _label(stage: Stage) -> Optional[str]:
        if stage.kind in M_STAGES + (ORACLE, ):
            return stage.model_label
        return f'F({stage.k})' if stage.kind == 'translation' else None

    def _planned_units(self, stage: Stage) -> dict:
        """Planned work of a stage: iterations (training stages: ``max_iters``, or epochs x dataloader length)
        or images (translation of S, pseudo labels of T). ``units=None`` where it cannot be known."""
        unit = 'image' if stage.kind in ('translate', 'pseudo_label') else 'iter'
        try:
            if stage.kind == 'source_only' and self.source_only_checkpoint is not None:
                return dict(units=None, unit=None)
            if stage.kind in M_STAGES + (ORACLE, ):
                return dict(units=self._train_iters(self._m_stage_cfg(stage)), unit=unit)
            if stage.kind == 'translation':
                return dict(units=self._train_iters(self._translation_cfg(stage, None)), unit=unit)
            if stage.kind == 'translate':
                from ...apis import list_images
                source = self.outer_cfg.train_dataloader.dataset.source
                suffix = self.stage_cfgs['translate'].get('img_suffix', _img_suffix(source))
                src_dir = osp.join(source.get('data_root', ''), source.data_prefix.img_path)
                return dict(units=len(list_images(src_dir, suffix)), unit=unit)
            target = copy.deepcopy(self.outer_cfg.train_dataloader.dataset.target)
            target.pipeline = []
            return dict(units=len(DATASETS.build(target)), unit=unit)
        except Exception as e:  # noqa: BLE001 - the status then has no ETA for this stage; training goes on
            self.runner.logger.info(f'[BDL] planned work of {stage.name} unknown ({type(e).__name__}: {e})')
            return dict(units=None, unit=unit)

    @staticmethod
    def _train_iters(cfg: Config) -> Optional[int]:
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
