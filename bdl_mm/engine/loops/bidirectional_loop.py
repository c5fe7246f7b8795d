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
Every M run starts from the same initial weights (release practice, ``m_init='initial'``) or, with
``m_init='previous'``, from the previous M of the round.
"""
import copy
import json
import os
import os.path as osp
import time
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.dist import barrier, broadcast_object_list, get_dist_info, is_main_process
from mmengine.runner import BaseLoop, Runner, find_latest_checkpoint, load_checkpoint
from mmseg.registry import LOOPS, MODELS

from ...apis.stage_outputs import (
    atomic_write_json,
    export_segmentor_checkpoint,
    format_results_table,
    save_model_checkpoint,
    save_sample_sheet,
)
from ...utils import cpu_model_wrapper, enable_amp

# Stage kinds and the config key of their settings in ``train_cfg.stages``.
STAGE_KINDS = ('source_only', 'translation', 'translate', 'adaptation', 'pseudo_label', 'ssl_adaptation')
M_STAGES = ('source_only', 'adaptation', 'ssl_adaptation')
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


class Stage:
    """One step of Algorithm 1: its unique name (= its folder under the work dir), kind, round k and i."""

    def __init__(self, name: str, kind: str, k: int = 0, i: int = 0):
        self.name, self.kind, self.k, self.i = name, kind, k, i

    @property
    def model_label(self) -> str:
        """The paper's name of the model an M stage produces (Table 2 rows)."""
        if self.kind == 'source_only':
            return 'M(0)'
        return f'M_{self.i}({self.k})'

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
            relative to the BDL config's folder or absolute) and ``cfg_options``; ``translate``: keyword
            arguments of :func:`bdl_mm.apis.translate_dataset`; ``pseudo_label``: keyword arguments of
            :func:`bdl_mm.apis.generate_pseudo_labels` (``mode``, ``threshold`` ...).
        use_translation (bool): ablation switch: ``False`` trains M on the original source (no F).
        use_ssl (bool): ablation switch: ``False`` stops each round after M_0(k).
        perceptual (bool): ablation switch: ``False`` trains F as MMagic's plain CycleGAN.
        adversarial (bool): ablation switch: ``False`` trains M without D_M.
        m_init (str): ``'initial'`` (release): every M run starts from the same initial weights (the
            config's ``load_from``, e.g. the converted DeepLab initialisation, else the seeded random
            initialisation saved at the start); ``'previous'``: M_i(k) starts from M_(i-1)(k) and M_0(k)
            from M(k-1).
        source_only_checkpoint (str, optional): a trained M(0) (BDLSegmentor or plain segmentor
            checkpoint) instead of training it.
        sample_sheets (bool): save a PNG sample sheet per M stage.
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
                 sample_sheets: bool = True):
        # BaseLoop.__init__ would build the outer dataloader; the stages build their own.
        self._runner = runner
        self.dataloader = dataloader
        for key, value in (('K', K), ('N', N)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'train_cfg.{key} must be an integer >= 1, got {value!r}')
        if m_init not in ('initial', 'previous'):
            raise ValueError(f"train_cfg.m_init must be 'initial' or 'previous', got {m_init!r}")
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
        self.work_dir = runner.work_dir
        self.plan = self._make_plan()
        self._iter = 0
        self.state: Dict[str, dict] = {}
        self._check_stage_configs()

    # ------------------------------------------------------------------ plan and configs
    def _make_plan(self) -> List[Stage]:
        plan = [Stage('m0', 'source_only')]
        for k in range(1, self.K + 1):
            if self.use_translation:
                plan += [Stage(f'k{k}/translation', 'translation', k), Stage(f'k{k}/translate', 'translate', k)]
            plan.append(Stage(f'k{k}/m0', 'adaptation', k, 0))
            if self.use_ssl:
                for i in range(1, self.N + 1):
                    plan += [Stage(f'k{k}/ssl{i}', 'pseudo_label', k, i), Stage(f'k{k}/m{i}', 'ssl_adaptation', k, i)]
        return plan

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
        overrides = copy.deepcopy(self.stage_cfgs[stage.kind])
        cfg.merge_from_dict(overrides.to_dict(), allow_list_keys=True)
        cfg.model.adversarial = bool(self.adversarial) and stage.kind != 'source_only'
        dataset = cfg.train_dataloader.dataset
        if stage.kind == 'source_only':
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

    def _translation_cfg(self, stage: Stage, m_checkpoint: Optional[str]) -> Config:
        settings = copy.deepcopy(self.stage_cfgs['translation'])
        path = settings.get('config')
        if path is None:
            raise ValueError('train_cfg.stages.translation.config: the F config path is missing')
        path = _resolve_config_path(path, self.outer_cfg.filename)
        cfg = Config.fromfile(path)
        if settings.get('cfg_options'):
            cfg.merge_from_dict(settings.cfg_options.to_dict(), allow_list_keys=True)
        # F's perceptual loss runs the current M (architecture from the BDL config, weights from M(k-1)).
        cfg.model.segmentor = dict(cfg.model.get('segmentor', {}), config=copy.deepcopy(self.outer_cfg.model.segmentor),
                                   checkpoint=m_checkpoint)
        if not self.perceptual:
            cfg.model.lambda_per = 0.
            cfg.model.lambda_per_recon = 0.
        self._set_stage_run(cfg, stage)
        if cfg.launcher == 'pytorch':
            cpu_model_wrapper(cfg)
        if self._uses_amp():
            enable_amp(cfg)
        if 'env_cfg' in self.outer_cfg:
            cfg.env_cfg = copy.deepcopy(self.outer_cfg.env_cfg)
        cfg.pop('load_from', None)
        return cfg

    def _uses_amp(self) -> bool:
        """``tools/train.py --amp`` switched the outer wrappers: F's config (read from its own file) follows."""
        return 'AmpOptimWrapper' in str(self.outer_cfg.get('optim_wrapper', ''))

    def _check_stage_configs(self):
        """Derive and build every stage's model before any training, naming the key that fails."""
        built = set()  # stages usually share one model config: build each distinct one once
        for kind in dict.fromkeys(s.kind for s in self.plan):
            if kind in ('translate', 'pseudo_label'):
                continue
            key = f'train_cfg.stages.{kind}'
            try:
                if kind == 'translation':
                    cfg = self._translation_cfg(Stage('check', kind), None)
                    from mmagic.registry import MODELS as registry
                else:
                    cfg = self._m_stage_cfg(Stage('check', kind))
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
            raise RuntimeError(f'{self.work_dir} holds a BDL run with completed stages '
                               f'({", ".join(state["stages"])}); pass --resume to continue it or use another '
                               '--work-dir')
        plan_names = [s.name for s in self.plan]
        unknown = [name for name in state.get('stages', {}) if name not in plan_names]
        if unknown:
            raise RuntimeError(f'{path} records stage {unknown[0]!r} that this config does not plan; the config '
                               'changed since the run started: use another --work-dir')
        self.state = state.get('stages', {})

    def _save_state(self):
        if is_main_process():
            atomic_write_json(self._state_path(), dict(plan=[s.name for s in self.plan], stages=self.state))
        barrier()

    # ------------------------------------------------------------------ stages
    def _run_child(self, cfg: Config) -> Runner:
        stage_dir = cfg.work_dir
        cfg.resume = find_latest_checkpoint(stage_dir) is not None if osp.isdir(stage_dir) else False
        if cfg.resume:
            cfg.load_from = None  # resume the interrupted stage from its own last checkpoint
        child = Runner.from_cfg(cfg)
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
        cfg = self._translation_cfg(stage, m_checkpoint)
        config_path = osp.join(cfg.work_dir, 'translation_config.py')
        if is_main_process():
            os.makedirs(cfg.work_dir, exist_ok=True)
            cfg.dump(config_path)  # translate stage and later users rebuild F from this exact config
        child = self._run_child(cfg)
        ckpt = osp.join(cfg.work_dir, 'final_model.pth')
        if is_main_process():
            save_model_checkpoint(child.model, ckpt)
        barrier()
        return dict(checkpoint=ckpt, config=config_path, perceptual_m=m_checkpoint)

    def _translate(self, stage: Stage, f_result: dict) -> dict:
        from ...apis import load_translator, translate_dataset
        source = self.outer_cfg.train_dataloader.dataset.source
        src_dir = osp.join(source.get('data_root', ''), source.data_prefix.img_path)
        out_dir = self._stage_dir(stage)
        rank, world_size = get_dist_info()
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        translator = load_translator(f_result['config'], f_result['checkpoint'], device=device)
        settings = dict(img_suffix=source.get('img_suffix', '.png'), progress=is_main_process())
        settings.update(self.stage_cfgs['translate'].to_dict())
        counts = translate_dataset(translator, src_dir, out_dir, shard_id=rank, num_shards=world_size, **settings)
        barrier()
        return dict(translated_dir=osp.abspath(out_dir), counts=counts)

    def _pseudo_label(self, stage: Stage, m_result: dict) -> dict:
        from ...apis import generate_pseudo_labels
        out_dir = self._stage_dir(stage)
        settings = self.stage_cfgs['pseudo_label'].to_dict()
        model_cfg = copy.deepcopy(self.outer_cfg.model.segmentor)
        model = MODELS.build(model_cfg)
        load_checkpoint(model, m_result['segmentor_checkpoint'], map_location='cpu', logger='silent')
        if torch.cuda.is_available():
            model = model.cuda()
        target = copy.deepcopy(self.outer_cfg.train_dataloader.dataset.target)
        summary = generate_pseudo_labels(model, target, out_dir, **settings)
        barrier()
        return dict(pseudo_label_dir=osp.abspath(out_dir),
                    kept_ratio=summary.get('kept_ratio'), summary=osp.join(out_dir, 'summary.json'))

    # ------------------------------------------------------------------ main
    def run(self):
        self.runner.call_hook('before_train')
        self._load_state()
        init_weights = self._initial_weights()
        logger = self.runner.logger
        start = time.time()
        prev_m = None  # result of the last M stage
        m_of_round = {0: None}  # M(k)
        translated_dir = None
        f_result = None
        pseudo = None
        for idx, stage in enumerate(self.plan):
            self._iter = idx
            done = self.state.get(stage.name)
            if done is not None and done.get('status') == 'done':
                logger.info(f'[BDL] stage {stage.name} already completed: skipped')
                result = done
            else:
                logger.info(f'[BDL] stage {idx + 1}/{len(self.plan)}: {stage.name} ({stage.kind})')
                t0 = time.time()
                result = self._run_stage(stage, init_weights, prev_m, m_of_round, translated_dir, f_result, pseudo)
                result.update(status='done', kind=stage.kind, seconds=round(time.time() - t0, 1))
                if stage.kind in M_STAGES:
                    result['label'] = stage.model_label
                # all ranks agree on the recorded result (paths and metrics come from rank 0)
                obj = [result]
                broadcast_object_list(obj)
                result = obj[0]
                self.state[stage.name] = result
                self._save_state()
            if stage.kind in M_STAGES:
                prev_m = result
                if stage.kind == 'source_only' or stage.i == (self.N if self.use_ssl else 0):
                    m_of_round[stage.k] = result
                pseudo = None
            elif stage.kind == 'translation':
                f_result = result
            elif stage.kind == 'translate':
                translated_dir = result['translated_dir']
            elif stage.kind == 'pseudo_label':
                pseudo = result
        self._iter = len(self.plan)
        final = m_of_round[self.K] or prev_m
        load_checkpoint(self.runner.model.module if hasattr(self.runner.model, 'module') else self.runner.model,
                        final['checkpoint'], map_location='cpu', logger='silent')
        if is_main_process():
            save_model_checkpoint(self.runner.model, osp.join(self.work_dir, 'final_model.pth'),
                                  meta=dict(stage=final.get('label'), source_checkpoint=final['checkpoint']))
            table = format_results_table(self.plan, self.state, self.outer_cfg, self.work_dir)
            logger.info('[BDL] results\n' + table)
            print(table, flush=True)
        logger.info(f'[BDL] finished {len(self.plan)} stages in {time.time() - start:.0f} s; final model: '
                    f'{osp.join(self.work_dir, "final_model.pth")}')
        self.runner.call_hook('after_train')
        return self.runner.model

    def _run_stage(self, stage, init_weights, prev_m, m_of_round, translated_dir, f_result, pseudo) -> dict:
        if stage.kind == 'source_only':
            if self.source_only_checkpoint is not None:
                return self._import_source_only(stage)
            return self._train_m(stage, None, None, init_weights)
        if stage.kind == 'translation':
            return self._train_f(stage, m_of_round[stage.k - 1]['segmentor_checkpoint'])
        if stage.kind == 'translate':
            return self._translate(stage, f_result)
        if stage.kind == 'pseudo_label':
            return self._pseudo_label(stage, prev_m)
        # adaptation / ssl_adaptation
        if self.m_init == 'initial':
            load_from = init_weights
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
        child = Runner.from_cfg(cfg)
        # a plain segmentor checkpoint gets the `segmentor.` prefix of BDLSegmentor's keys
        child.load_checkpoint(self.source_only_checkpoint,
                              revise_keys=[(r'^module\.', ''), (r'^(?!segmentor\.|discriminator\.)', 'segmentor.')])
        metrics = child.val()
        return self._finish_m(child, cfg, metrics, imported=self.source_only_checkpoint)
