"""Algorithm 1 of the paper (bidirectional learning) as one mmengine training loop.

``python tools/train.py configs/bdl_gta5.py`` builds a Runner whose ``train_cfg`` is this loop. The outer
config is the configuration of the adaptation model M (``BDLSegmentor``: model, UDA dataloader, optimisers,
schedules, evaluation). The loop builds the plan of stages from ``train_cfg``
(:func:`~bdl_mm.structures.plan.build_plan`; ``tools/train.py CONFIG --dry-run`` prints it), derives one child
config per stage from the outer config (:class:`~bdl_mm.engine.stage_configs.StageConfigBuilder`) and runs each
stage's function (:data:`~bdl_mm.engine.stages.STAGE_RUNNERS`) with its own mmengine Runner, work dir, logs and
checkpoints::

    m0                      source-only M(0)            (or ``source_only_checkpoint``)
    k{k}/translation        train F(k), perceptual loss through M(k-1)
    k{k}/translate          S'(k) = F(k)(S), every source image, labels unchanged
    k{k}/m0                 M_0(k) on S'(k) + T
    k{k}/ssl{i}, k{k}/m{i}  pseudo-label T with M_(i-1)(k), then M_i(k) on S'(k) + T + T_ssl  (i = 1..N)

A completed stage is recorded in ``<work_dir>/bdl_state.json`` (:class:`~bdl_mm.engine.run_state.RunState`) and
never rerun; ``--resume`` continues from the first incomplete stage, inside a training stage from its last
checkpoint. Before the first stage the run refuses a config changed since it started (``bdl_config.json``,
``force_resume`` overrides) and scans every data set it will read (``check_data``); every training stage stops at
a non-finite loss (``non_finite_loss``) and names a file that fails to load (docs/reliability.md).
"""
import os.path as osp
import time
from typing import Dict, Optional

from mmengine.config import Config
from mmengine.dist import barrier, broadcast_object_list, is_main_process
from mmengine.runner import BaseLoop, load_checkpoint
from mmseg.registry import LOOPS

from ...evaluation.results_table import format_results_table
from ...models.decode_heads.deeplabv2_head import check_classifier_checkpoint
from ...structures.plan import INITIAL, M_KINDS, build_plan
from ...utils.data_workers import release_memory
from ..checkpoint import save_model_checkpoint
from ..disk_estimate import check_plan_disk
from ..hooks.non_finite_loss_hook import ACTIONS
from ..prealign import ssl_second_copy
from ..preflight import CHECK_MODES
from ..run_state import RunState, end_line, start_line
from ..run_status import format_duration
from ..runner import CONSOLE
from ..stage_configs import StageConfigBuilder, check_model_switches
from ..stages import STAGE_RUNNERS, StageContext
from ..work_dir_lock import WorkDirInUseError, WorkDirLock


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
            ``translate``: keyword arguments of :func:`bdl_mm.apis.translate_dataset`; ``pseudo_label``: keyword
            arguments of :func:`bdl_mm.apis.generate_pseudo_labels` (``mode``, ``threshold`` ...).
        use_translation (bool): ablation switch: ``False`` trains M on the original source (no F).
        use_ssl (bool): ablation switch: ``False`` stops each round after M_0(k).
        perceptual (bool): ablation switch: ``False`` trains F as MMagic's plain CycleGAN.
        adversarial (bool): ablation switch: ``False`` trains M without D_M. The one switch of adversarial
            training: the outer ``model`` must not set ``adversarial`` itself.
        m_init (str): ``'initial'`` (release): every M run starts from the same initial weights (the
            config's ``load_from``, e.g. the converted DeepLab initialisation, else the seeded random
            initialisation saved at the start); ``'previous'``: M_i(k) starts from M_(i-1)(k) and M_0(k)
            from M(k-1); ``'source_only'``: every adaptation run starts from M(0)'s weights (for M trained from
            random weights, as on the toy: M(0) plays the part of the release's segmentation-pretrained
            initialisation, the COCO DeepLab; M(0) starts from the initial weights, the oracle of ``references``
            from M(0) like the adaptation runs).
        ssl_from_previous_round (bool): ``False`` (release): M_0(k) trains without pseudo labels in every round;
            ``True``: in rounds k >= 2 it trains on pseudo labels of T from M(k-1) (stage ``k{k}/ssl0``) with the
            SSL settings, so the round's first M keeps what the last round learnt on T (no effect without SSL).
        ssl_untranslated_source (bool): ``False`` (release): an SSL stage (an M trained with pseudo labels: M_i(k),
            i >= 1, and M_0(k) under ``ssl_from_previous_round``) trains on S'(k) alone; ``True``: on S'(k) and the
            untranslated S, each drawn with probability 1/2 or ``ssl_second_source_share`` for S (1: S alone;
            ``UDADataset.untranslated_source``), so that source labels F's S' no longer fits teach M less often.
        ssl_baseline_source (dict, optional): ``None`` (release); a baseline's settings, ``dict(type='Reinhard')``:
            as ``ssl_untranslated_source`` (not both) with B(S) for S, B fitted on T (row 21, ``prealign.py``).
        second_source_all_stages (bool): ``False`` (release): M_0(k) without pseudo labels trains on S'(k) alone;
            ``True`` (row 22): on S'(k) and the SSL stages' second copy (S or B(S)) too, drawn as they draw it.
        ssl_lr_factor (float): ``1.0`` (release): every M stage at the learning rate of M's optimiser
            (``optim_wrapper.segmentor.optimizer.lr``, or a stage's own under ``stages``); any other value scales
            it in every SSL stage (as ``ssl_untranslated_source``'s), D_M's untouched: the robust recipe's 0.2.
        source_only_checkpoint (str, optional): a trained M(0) (BDLSegmentor or plain segmentor
            checkpoint) instead of training it.
        sample_sheets (bool): save a PNG sample sheet per M stage.
        check_data (str): the preflight scan of every data set the plan reads, before the first stage
            (:mod:`bdl_mm.engine.preflight`): ``'header'`` (default), ``'full'`` or ``'none'``
            (``tools/train.py --check-data``).
        force_resume (bool): continue a run whose config changed since it started (``--force-resume``); by
            default such a run is refused with the changed keys (:mod:`bdl_mm.engine.fingerprint`).
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

    Attributes:
        plan (Plan): the stages, in order, with their inputs. configs (StageConfigBuilder): each stage's child
        config. run_state (RunState): ``bdl_state.json``. context (StageContext): what the stage functions get.
    """
    resumes_stages = True  # the outer runner only loads load_from; run_plan() resumes each stage itself

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
                 ssl_from_previous_round: bool = False,
                 ssl_untranslated_source: bool = False,
                 ssl_baseline_source: Optional[dict] = None, ssl_second_source_share: float = 0.5,
                 ssl_lr_factor: float = 1.0, second_source_all_stages: bool = False,
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
        check_model_switches(self.outer_cfg)
        self.plan = build_plan(dict(K=K, N=N, stages=stages, use_translation=use_translation, use_ssl=use_ssl,
                                    perceptual=perceptual, m_init=m_init, source_only_checkpoint=source_only_checkpoint,
                                    ssl_from_previous_round=ssl_from_previous_round, references=references,
                                    ssl_untranslated_source=ssl_untranslated_source,
                                    **ssl_second_copy(ssl_baseline_source, ssl_untranslated_source,
                                                      ssl_second_source_share, second_source_all_stages)))
        if check_data not in CHECK_MODES:
            raise ValueError(f'train_cfg.check_data must be one of {CHECK_MODES}, got {check_data!r}')
        self.check_data, self.force_resume = check_data, bool(force_resume)
        non_finite = dict(non_finite_loss) if isinstance(non_finite_loss, dict) else dict(action=non_finite_loss)
        if non_finite.get('action', 'stop') not in ACTIONS:
            raise ValueError(f'train_cfg.non_finite_loss must be one of {ACTIONS} (or dict(action=..., '
                             f'max_skips=...)), got {non_finite_loss!r}')
        diagnostics = {} if diagnostics is True else diagnostics
        if diagnostics not in (False, None) and not isinstance(diagnostics, dict):
            raise ValueError(f'train_cfg.diagnostics must be True, False or a dict, got {diagnostics!r}')
        diagnostics = None if diagnostics in (False, None) else dict(num_images=100, target_labels='auto') | diagnostics
        if source_only_checkpoint is not None:
            check_classifier_checkpoint(self.outer_cfg.model, source_only_checkpoint,
                                        'train_cfg.source_only_checkpoint')
        self.work_dir = runner.work_dir
        self._iter = 0
        # ssl_lr_factor: applied per SSL stage by StageConfigBuilder, which reads it from the outer config
        self.configs = StageConfigBuilder(self.outer_cfg, self.plan, self.work_dir, adversarial=adversarial)
        self.run_state = RunState(self.work_dir, self.plan,
                                  lambda stage: self.configs.planned_units(stage, self.runner.logger))
        self.context = StageContext(self.configs, self.plan, self.run_state.stages, sample_sheets=sample_sheets,
                                    diagnostics=diagnostics, non_finite_loss=non_finite,
                                    verbose_console=bool(verbose_console),
                                    logger=getattr(runner, 'logger', None))
        self.configs.check_stage_configs()  # builds every stage's model once, from a forked random generator

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

    @property
    def state(self) -> Dict[str, dict]:
        """The completed stages' records (``bdl_state.json``'s ``stages``)."""
        return self.run_state.stages

    def initial_weights(self) -> str:
        """Weights every M run starts from: the outer model after its init (and ``load_from``)."""
        path = osp.join(self.work_dir, 'init_weights.pth')
        # rank 0 decides and writes; every rank waits at the barrier (a rank that tested the file itself could see
        # rank 0's new file, skip the barrier and leave the ranks one barrier apart: a hang)
        if is_main_process() and not osp.isfile(path):
            save_model_checkpoint(self.runner.model, path)
        barrier()
        return path

    def run(self):
        self.runner.call_hook('before_train')
        lock = self.lock_work_dir()
        try:
            self.run_plan()
        finally:
            if lock is not None:
                lock.release()
        self.runner.call_hook('after_train')
        return self.runner.model

    def lock_work_dir(self) -> Optional[WorkDirLock]:
        """One run per work dir: rank 0 takes ``bdl_run.lock``; every rank stops if it is refused."""
        lock, error = None, [None]
        if is_main_process():
            try:
                lock = WorkDirLock(self.work_dir).acquire(self.force_resume, self.runner.logger)
            except WorkDirInUseError as e:
                error = [str(e)]
        broadcast_object_list(error)
        if error[0] is not None:
            raise WorkDirInUseError(error[0])
        return lock

    def run_plan(self):
        """Walk the plan: skip a completed stage, run the others in order, then export the final model."""
        logger = self.runner.logger
        self.run_state.load(resume=self.runner._resume)
        # the config unchanged since the run started, the preflight data scan
        self.run_state.check_before_stages(self.outer_cfg, self.configs, self.check_data, self.force_resume, logger)
        if is_main_process() and self.check_data != 'none':  # and the free space for what the stages will write
            check_plan_disk(self.plan, self.configs, self.runner.model, self.work_dir, self.run_state.stages, logger)
        records = {INITIAL: dict(checkpoint=self.initial_weights())}
        start = time.time()
        self.run_state.run_info = dict(started=start, finished=None)
        logger.info(f'[BDL] Algorithm 1: {len(self.plan)} stages in {self.work_dir}; full log: '
                    f'{getattr(logger, "log_file", None)}; status: python tools/status.py {self.work_dir}',
                    extra=CONSOLE)
        for idx, stage in enumerate(self.plan):
            self._iter = idx
            if self.run_state.done(stage) is not None:
                logger.info(f'[BDL] stage {stage.name} already completed: skipped', extra=CONSOLE)
                continue
            logger.info(start_line(idx, self.plan, stage, self.configs.stage_dir(stage)), extra=CONSOLE)
            t0 = time.time()
            self.run_state.start(stage, t0)
            inputs = {role: records.get(name) or self.state[name] for role, name in stage.inputs.items()}
            result = STAGE_RUNNERS[stage.kind](self.context, stage, inputs)
            result.update(status='done', kind=stage.kind, seconds=round(time.time() - t0, 1))
            if stage.kind in M_KINDS:
                result['label'] = stage.model_label
            obj = [result]  # all ranks agree on the recorded result (paths and metrics come from rank 0)
            broadcast_object_list(obj)
            self.run_state.finish(stage, obj[0])
            if is_main_process():  # live results: the table so far, after every stage
                format_results_table(self.plan, self.state, self.outer_cfg, self.work_dir, self.plan.run_name)
            logger.info(end_line(idx, self.plan, stage, obj[0]), extra=CONSOLE)
            release_memory()  # the stage's runner, model and optimiser (runner and loops hold each other)
        self._iter = len(self.plan)
        final = self.state[self.plan.final]
        load_checkpoint(self.runner.model.module if hasattr(self.runner.model, 'module') else self.runner.model,
                        final['checkpoint'], map_location='cpu', logger='silent')
        if is_main_process():
            save_model_checkpoint(self.runner.model, osp.join(self.work_dir, 'final_model.pth'),
                                  meta=dict(stage=final.get('label'), source_checkpoint=final['checkpoint']))
            table = format_results_table(self.plan, self.state, self.outer_cfg, self.work_dir, self.plan.run_name)
            logger.info('[BDL] results\n' + table, extra=CONSOLE)  # printed once
        self.run_state.run_info['finished'] = time.time()
        self.run_state.save()
        logger.info(f'[BDL] finished {len(self.plan)} stages in {format_duration(time.time() - start)}; final model: '
                    f'{osp.join(self.work_dir, "final_model.pth")}', extra=CONSOLE)
