"""What a stage function of :data:`~bdl_mm.engine.stages.STAGE_RUNNERS` gets besides its stage and inputs."""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ...structures.plan import Plan
from ..stage_configs import StageConfigBuilder


@dataclass
class StageContext:
    """The run a stage belongs to.

    Args:
        configs: the stage config builder (the outer config, each stage's child config).
        plan: the run's plan.
        state: the completed stages' records (``bdl_state.json``'s ``stages``, the run state's own dict; a translate
            stage reuses an earlier S' made by the same fitted baseline).
        sample_sheets: save a PNG sample sheet per M stage.
        diagnostics: the per-stage diagnostics settings (``dict(num_images, target_labels)``), None: off.
        non_finite_loss: :class:`~bdl_mm.engine.hooks.NonFiniteLossHook` settings of every training stage.
        verbose_console: mmengine's full console for every stage instead of the concise one.
        logger: the run's logger.
    """
    configs: StageConfigBuilder
    plan: Plan
    state: Dict[str, dict] = field(default_factory=dict)
    sample_sheets: bool = True
    diagnostics: Optional[dict] = None
    non_finite_loss: dict = field(default_factory=lambda: dict(action='stop'))
    verbose_console: bool = False
    logger: Any = None  # the run's logger (the outer runner's): the console lines about the stages

    @property
    def cfg(self):
        """The outer BDL config."""
        return self.configs.cfg

    @property
    def work_dir(self) -> str:
        return self.configs.work_dir

    def stage_dir(self, stage) -> str:
        return self.configs.stage_dir(stage)
