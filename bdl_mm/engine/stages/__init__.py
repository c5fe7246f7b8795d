"""One function per stage kind of Algorithm 1, behind :data:`STAGE_RUNNERS`.

Each is called as ``fn(ctx, stage, inputs)``: ``ctx`` a :class:`StageContext`, ``stage`` a
:class:`~bdl_mm.structures.plan.Stage`, ``inputs`` ``{role: record}``, the records of the stages ``stage.inputs``
names (``start_from`` of the initial weights: ``dict(checkpoint=<work_dir>/init_weights.pth)``); it returns the
stage's record (``bdl_state.json``)."""
from ...structures.plan import ADAPTATION, ORACLE, PSEUDO_LABEL, SOURCE_ONLY, SSL_ADAPTATION, TRANSLATE, TRANSLATION
from .common import build_child, finish_m, run_child, train_m
from .context import StageContext
from .m_stages import run_adaptation, run_oracle, run_source_only
from .pseudo_labels import run_pseudo_label
from .translation import run_translate, run_translation

STAGE_RUNNERS = {
    SOURCE_ONLY: run_source_only,
    TRANSLATION: run_translation,
    TRANSLATE: run_translate,
    ADAPTATION: run_adaptation,
    PSEUDO_LABEL: run_pseudo_label,
    SSL_ADAPTATION: run_adaptation,
    ORACLE: run_oracle,
}

__all__ = [
    'STAGE_RUNNERS', 'StageContext', 'build_child', 'finish_m', 'run_adaptation', 'run_child', 'run_oracle',
    'run_pseudo_label', 'run_source_only', 'run_translate', 'run_translation', 'train_m'
]
