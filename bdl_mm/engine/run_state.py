"""Run bookkeeping of Algorithm 1: ``<work_dir>/bdl_state.json`` (the completed stages, the stage running, the plan
with its planned work for ``tools/status.py``), the checks before the first stage (config fingerprint, preflight
data scan) and the run's console lines.

``bdl_state.json`` (written atomically, main process): ``plan`` (stage names), ``stages`` (name -> record of each
completed stage), ``plan_details`` (per stage: name, kind, label, what, planned units), ``running`` (the stage in
progress: name, start time, pid, host), ``run`` (start and end times) and ``final_model`` (path, stage, label).
"""
import json
import os
import os.path as osp
import socket
import time
from typing import Callable, Dict, List, Optional

from mmengine.dist import barrier, is_main_process

from ..structures.plan import PSEUDO_LABEL, TRANSLATE, Plan, Stage
from ..utils.atomic_io import atomic_write_json
from .fingerprint import RunMixError, check_config_unchanged, config_fingerprint, record_fingerprint
from .preflight import preflight
from .run_status import STATE_FILE, format_duration


class RunState:
    """The state of a run in ``work_dir``.

    Args:
        work_dir (str): the run's work dir.
        plan (Plan): the run's plan.
        planned_units (callable, optional): ``stage -> dict(units, unit)``, the planned work of a stage (computed
            once, when the state is first saved).
    """

    def __init__(self, work_dir: str, plan: Plan, planned_units: Optional[Callable[[Stage], dict]] = None):
        self.work_dir, self.plan = work_dir, plan
        self.planned_units = planned_units or (lambda stage: dict(units=None, unit=None))
        self.stages: Dict[str, dict] = {}  # the completed stages' records, in the order they completed
        self.running: Optional[dict] = None  # the stage in progress, for tools/status.py
        self.run_info: dict = {}
        self._plan_details: Optional[List[dict]] = None

    @property
    def path(self) -> str:
        return osp.join(self.work_dir, STATE_FILE)

    def read(self) -> dict:
        """The state file's content ({} if there is none)."""
        if not osp.isfile(self.path):
            return {}
        with open(self.path) as f:
            return json.load(f)

    def load(self, resume: bool):
        """Read the completed stages; refuse (:class:`RunMixError`) a work dir with completed stages without
        ``resume``, or whose state names a stage this plan does not have."""
        state = self.read()
        if state.get('stages') and not resume:
            raise RunMixError(f'{self.work_dir} holds a BDL run with completed stages '
                              f'({", ".join(state["stages"])}); pass --resume to continue it or use another '
                              '--work-dir')
        unknown = [name for name in state.get('stages', {}) if name not in self.plan.names]
        if unknown:
            raise RunMixError(f'{self.path} records stage {unknown[0]!r} that this config does not plan; the config '
                              'changed since the run started: use another --work-dir')
        self.stages.clear()  # the same dict: the stage functions read it (StageContext.state)
        self.stages.update(state.get('stages', {}))

    def done(self, stage: Stage) -> Optional[dict]:
        """The record of a completed stage, None if it is not done."""
        record = self.stages.get(stage.name)
        return record if record is not None and record.get('status') == 'done' else None

    def save(self):
        if is_main_process():
            atomic_write_json(self.path, dict(plan=self.plan.names, stages=self.stages, **self.progress_state()))
        barrier()

    def start(self, stage: Stage, started: Optional[float] = None):
        """Record ``stage`` as running since ``started`` (default: now), with its pid and host (tools/status.py)."""
        started = time.time() if started is None else started
        self.running = dict(stage=stage.name, started=started, pid=os.getpid(), host=socket.gethostname())
        self.save()

    def finish(self, stage: Stage, result: dict):
        """Record ``stage`` as completed with ``result``."""
        self.stages[stage.name] = result
        self.running = None
        self.save()

    def plan_details(self) -> List[dict]:
        """Per stage: name, kind, label, what it trains or makes, its planned work."""
        if self._plan_details is None:
            self._plan_details = [dict(name=s.name, kind=s.kind, label=s.label, what=s.what,
                                       **self.planned_units(s)) for s in self.plan]
        return self._plan_details

    def progress_state(self) -> dict:
        """What ``tools/status.py`` reads beside the completed stages (``bdl_state.json``)."""
        final = self.plan.final_stage
        return dict(plan_details=self.plan_details(), running=self.running, run=self.run_info,
                    final_model=dict(path=osp.abspath(osp.join(self.work_dir, 'final_model.pth')), stage=final.name,
                                     label=final.model_label))

    def check_before_stages(self, cfg, configs, check_data: str, force_resume: bool = False, logger=None):
        """Before anything trains: refuse a config changed since the run started (unless ``force_resume``), scan
        every data set the plan reads (``check_data``), then record the config's fingerprint."""
        fingerprint = config_fingerprint(cfg, self.plan, configs)
        changes = check_config_unchanged(self.work_dir, fingerprint, force=force_resume)
        if changes:
            logger.warning(f'[BDL] --force-resume: continuing with a config changed since the run started: '
                           f'{"; ".join(changes)}')
        preflight(self.plan, configs, check_data, state=self.stages, logger=logger, report_dir=self.work_dir)
        if changes is None and self.stages:
            logger.warning(f'[BDL] {self.work_dir} holds no config fingerprint (run started by an older version): '
                           'recording the current config')
        if is_main_process() and (changes is None or changes):
            record_fingerprint(self.work_dir, fingerprint, forced=changes or None)
        barrier()


def start_line(index: int, plan: Plan, stage: Stage, stage_dir: str) -> str:
    return f'[BDL] stage {index + 1}/{len(plan)} {stage.name}: {stage.what} -> {stage_dir}'


def end_line(index: int, plan: Plan, stage: Stage, result: dict) -> str:
    """The console line of a completed stage: its time, and its mIoU, kept ratio or images translated."""
    line = f'[BDL] stage {index + 1}/{len(plan)} {stage.name} done in {format_duration(result.get("seconds"))}'
    metrics = result.get('metrics') or {}
    if 'mIoU' in metrics:
        line += f': {stage.model_label} mIoU ' + ', '.join(
            f'{key} {metrics[key]:.1f}' if key != 'mIoU' else f'{metrics[key]:.1f}'
            for key in ('mIoU', 'mIoU16', 'mIoU13') if key in metrics)
    if stage.kind == PSEUDO_LABEL and result.get('kept_ratio') is not None:
        line += f': kept {100 * result["kept_ratio"]:.1f}% of the target pixels'
    if stage.kind == TRANSLATE and isinstance(result.get('counts'), dict):
        line += f': {result["counts"].get("written", 0)} images translated'
    return line
