"""Algorithm 1 of the paper as data: the stages of a run, in order, each with the stages whose outputs it reads.

:func:`build_plan` turns the Algorithm-1 settings of a config (``train_cfg`` of
:class:`~bdl_mm.engine.loops.BidirectionalLoop`) into a :class:`Plan`; :func:`format_plan` prints it as the paper's
Algorithm 1. A run (the loop) walks the plan and hands each stage the results of the stages it names::

    m0                      M(0) on S (or train_cfg.source_only_checkpoint)
    k{k}/translation        F(k), perceptual loss through M(k-1)
    k{k}/translate          S'(k) = F(k)(S)
    k{k}/m0                 M_0(k) on S'(k) + T
    k{k}/ssl{i}, k{k}/m{i}  pseudo labels of T from M_(i-1)(k), then M_i(k) on S'(k) + T + pseudo labels
                            (train_cfg.ssl_from_previous_round: k{k}/ssl0 from M(k-1) for M_0(k), k >= 2)
    ref/oracle, ref/<track>/...   the reference rows (train_cfg.references), after the run's own stages

Nothing here trains or reads a file: the module imports the standard library and ``mmengine.config`` only.
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from mmengine.config import ConfigDict

from .stage_kinds import (  # noqa: F401 - the kinds are part of the plan's vocabulary
    ADAPTATION,
    ALL_KINDS,
    M_KINDS,
    ORACLE,
    PLAN_M_KINDS,
    PSEUDO_LABEL,
    SOURCE_ONLY,
    SSL_ADAPTATION,
    STAGE_KINDS,
    TRANSLATE,
    TRANSLATION,
)

M_INITS = ('initial', 'previous', 'source_only')
# ``Stage.start_from`` of an M that starts from the initial weights (``<work_dir>/init_weights.pth``)
INITIAL = 'initial'
# the input roles of a stage, in the order :func:`format_plan` lists them
INPUT_ROLES = ('start_from', 'previous_m', 'translator', 'translated', 'label_with', 'pseudo_labels')
REFERENCE_KEYS = ('translation', 'K', 'N', 'use_ssl')
# how :func:`format_plan` names each input role
ROLE_NAMES = dict(start_from='starts from', previous_m='M(k-1)', translator='applies', translated="S'",
                  label_with='labels with', pseudo_labels='pseudo labels')


@dataclass(frozen=True)
class Stage:
    """One step of Algorithm 1.

    ``name`` is unique (= its folder under the work dir); ``track`` is ``''`` for the run itself, else the name of
    a reference track (``train_cfg.references``: its stages under ``ref/<track>/``; the oracle is the stage
    ``ref/oracle`` of the run's track). Its inputs, resolved when the plan is built (stage names, None: none):

    - ``start_from``: the M an M stage starts from (:data:`INITIAL`: the initial weights);
    - ``previous_m``: M(k-1), the M of F(k)'s perceptual loss (translation) and of the translate diagnostics;
    - ``translator``: the F (or baseline) a translate stage applies;
    - ``translated``: the translate stage whose S'(k) an M stage trains on;
    - ``label_with``: the M a pseudo-label stage labels T with;
    - ``pseudo_labels``: the pseudo-label stage whose labels an SSL M stage trains on.

    ``what``: what the stage trains or makes, in the paper's notation.
    """
    name: str
    kind: str
    k: int = 0
    i: int = 0
    track: str = ''
    start_from: Optional[str] = None
    previous_m: Optional[str] = None
    translator: Optional[str] = None
    translated: Optional[str] = None
    label_with: Optional[str] = None
    pseudo_labels: Optional[str] = None
    what: str = ''

    @property
    def model_label(self) -> str:
        """The paper's name of the model an M stage produces (Table 2 rows), prefixed by its reference track."""
        if self.kind == SOURCE_ONLY:
            return 'M(0)'
        if self.kind == ORACLE:
            return 'oracle'
        label = f'M_{self.i}({self.k})'
        return f'{self.track}: {label}' if self.track else label

    @property
    def label(self) -> Optional[str]:
        """The model a stage writes: an M's :attr:`model_label`, ``F(k)`` for a translation, else None."""
        return self.model_label if self.kind in M_KINDS else f'F({self.k})' if self.kind == TRANSLATION else None

    @property
    def inputs(self) -> Dict[str, str]:
        """``{role: stage name}`` of the inputs it reads (:data:`INPUT_ROLES`)."""
        return {role: getattr(self, role) for role in INPUT_ROLES if getattr(self, role) is not None}

    def __repr__(self):
        return f'Stage({self.name}, {self.kind})'


@dataclass(frozen=True, eq=False)
class Plan:
    """The stages of a run, in order, and the settings they were built from. Iterating, ``len`` and indexing walk
    the stages. ``final``: the stage whose M is the run's final model (the last M of the run's own track)."""
    stages: Tuple[Stage, ...]
    final: str
    K: int = 2
    N: int = 2
    use_translation: bool = True
    use_ssl: bool = True
    perceptual: bool = True
    m_init: str = 'initial'
    ssl_from_previous_round: bool = False
    ssl_untranslated_source: bool = False
    ssl_baseline_source: Optional[dict] = None
    ssl_second_source_share: float = 0.5
    second_source_all_stages: bool = False
    source_only_checkpoint: Optional[str] = None
    stage_settings: Dict[str, ConfigDict] = dataclasses.field(default_factory=dict)
    references: dict = dataclasses.field(default_factory=lambda: dict(oracle=None, tracks={}))

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __getitem__(self, index):
        return self.stages[index]

    @property
    def names(self) -> List[str]:
        return [s.name for s in self.stages]

    def get(self, name: str) -> Stage:
        """The stage called ``name`` (KeyError if the plan has none)."""
        if (stage := next((s for s in self.stages if s.name == name), None)) is None:
            raise KeyError(name)
        return stage

    @property
    def final_stage(self) -> Stage:
        return self.get(self.final)

    def translation_settings(self, track: str = '') -> Optional[ConfigDict]:
        """The translation settings of a track: ``stages.translation`` for the run itself, the track's
        ``translation`` for a reference track (None: that track does not translate)."""
        return self.references['tracks'][track].translation if track else self.stage_settings[TRANSLATION]

    def translates(self, track: str = '') -> bool:
        """Whether the track's M stages train on a translated source S'(k)."""
        return self.translation_settings(track) is not None and bool(track or self.use_translation)

    def baseline_settings(self, track: str = '') -> Optional[dict]:
        """The translation baseline in F's place in a track (its ``type`` and settings; ``config`` and
        ``cfg_options``, F's, left out), None if the track trains F or does not translate. The type is checked
        where the baseline is built (:class:`~bdl_mm.engine.stage_configs.StageConfigBuilder`)."""
        settings = self.translation_settings(track) or ConfigDict()
        return None if settings.get('type') is None else {
            k: v for k, v in settings.to_dict().items() if k not in ('config', 'cfg_options')}

    def second_copy(self, stage: Stage) -> bool:
        """Whether an M stage trains on a second copy of the source beside S'(k) (rows 17, 21, 22): an SSL stage,
        or M_0(k) under ``second_source_all_stages``, of a track that translates, where S or B(S) is that copy."""
        return (bool(self.ssl_untranslated_source or self.ssl_baseline_source) and self.translates(stage.track)
                and (stage.kind == SSL_ADAPTATION or (stage.kind == ADAPTATION and self.second_source_all_stages)))

    @property
    def run_name(self) -> str:
        """The run's own row in the reference table: its baseline's type where one is in F's place, else BDL."""
        baseline = self.baseline_settings() if self.use_translation else None
        return baseline['type'] if baseline else 'BDL'


def parse_references(references: Optional[dict], K: int = 2, N: int = 2, use_ssl: bool = True) -> dict:
    """``train_cfg.references`` -> ``dict(oracle=ConfigDict | None, tracks={name: ConfigDict(translation, K, N,
    use_ssl)})``, each setting checked. ``K``, ``N``, ``use_ssl``: the run's, the defaults of a track that trains F
    (a track with a baseline or without translation defaults to K = 1: a baseline does not depend on M)."""
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
        if unknown := sorted(set(track) - set(REFERENCE_KEYS)):
            raise ValueError(f'{key}.{unknown[0]}: unknown key; known: {", ".join(REFERENCE_KEYS)}')
        translation = track['translation']
        if translation is not None and not isinstance(translation, dict):
            raise ValueError(f'{key}.translation must be a dict or None, got {translation!r}')
        default_k = 1 if translation is None or translation.get('type') is not None else K
        settings = ConfigDict(translation=None if translation is None else ConfigDict(translation),
                              K=track.get('K', default_k), N=track.get('N', N),
                              use_ssl=bool(track.get('use_ssl', use_ssl)))
        for k in ('K', 'N'):
            if not isinstance(settings[k], int) or settings[k] < 1:
                raise ValueError(f'{key}.{k} must be an integer >= 1, got {settings[k]!r}')
        tracks[name] = settings
    return dict(oracle=None if oracle is None else ConfigDict(oracle), tracks=tracks)


def check_stage_settings(stages: dict, use_translation: bool, use_ssl: bool, imported_source_only: bool):
    """Every key of ``train_cfg.stages`` names a stage kind, and every kind the run trains has settings."""
    if unknown := sorted(set(stages) - set(STAGE_KINDS)):
        raise ValueError(f'train_cfg.stages.{unknown[0]}: unknown stage name; known: {", ".join(STAGE_KINDS)}')
    needed = ({ADAPTATION} | (set() if imported_source_only else {SOURCE_ONLY})
              | ({TRANSLATION, TRANSLATE} if use_translation else set())
              | ({PSEUDO_LABEL, SSL_ADAPTATION} if use_ssl else set()))
    if missing := sorted(needed - set(stages) - {TRANSLATE, PSEUDO_LABEL}):
        raise ValueError(f'train_cfg.stages.{missing[0]} is missing: this run needs settings for '
                         f'{", ".join(sorted(needed))}')


def build_plan(train_cfg: dict) -> Plan:
    """The plan of Algorithm 1 from the loop's settings (``train_cfg``: ``K``, ``N``, ``stages``, ``use_translation``,
    ``use_ssl``, ``perceptual``, ``m_init``, ``ssl_from_previous_round``, ``ssl_untranslated_source``,
    ``ssl_baseline_source``, ``ssl_second_source_share`` and ``second_source_all_stages`` (checked by the loop),
    ``source_only_checkpoint``, ``references``; other keys are ignored; defaults as the loop's). Raises ValueError
    naming a bad setting's key.

    Inputs, per track (the run itself, then each reference track, which starts from the run's M(0)):

    - F(k) (translation) and the diagnostics of S'(k) use M(k-1): the last M of round k-1 (M(0) for k = 1);
      S'(k) (translate) applies F(k);
    - an M stage of round k trains on S'(k) where the track translates; M_i(k) (i >= 1) on the pseudo labels of
      ``k{k}/ssl{i}``, made with M_(i-1)(k); with ``ssl_from_previous_round`` (and SSL), M_0(k), k >= 2, on those of
      ``k{k}/ssl0``, made with M(k-1); with ``ssl_untranslated_source`` an SSL stage trains on S'(k) and S, with
      ``ssl_baseline_source`` on S'(k) and B(S), drawing the copy with probability ``ssl_second_source_share``;
      with ``second_source_all_stages`` M_0(k) too, without pseudo labels;
    - an adaptation M starts from ``m_init``: ``'initial'``: the initial weights; ``'source_only'``: M(0);
      ``'previous'``: M_0(k) from M(k-1), M_i(k) from M_(i-1)(k). M(0) starts from the initial weights; the oracle
      from M(0) with ``m_init='source_only'``, else from the initial weights.
    """
    cfg = dict(train_cfg or {})
    K, N = cfg.get('K', 2), cfg.get('N', 2)
    for key, value in (('K', K), ('N', N)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f'train_cfg.{key} must be an integer >= 1, got {value!r}')
    m_init = cfg.get('m_init', 'initial')
    if m_init not in M_INITS:
        raise ValueError(f"train_cfg.m_init must be 'initial', 'previous' or 'source_only', got {m_init!r}")
    use_translation, use_ssl = cfg.get('use_translation', True), cfg.get('use_ssl', True)
    source_only_checkpoint = cfg.get('source_only_checkpoint')
    stages = dict(cfg.get('stages') or {})
    check_stage_settings(stages, use_translation, use_ssl, source_only_checkpoint is not None)
    references = parse_references(cfg.get('references'), K, N, use_ssl)
    settings = dict(K=K, N=N, use_translation=use_translation, use_ssl=use_ssl,
                    perceptual=cfg.get('perceptual', True), m_init=m_init,
                    ssl_from_previous_round=bool(cfg.get('ssl_from_previous_round', False)),
                    ssl_untranslated_source=bool(cfg.get('ssl_untranslated_source', False)),
                    ssl_baseline_source=dict(cfg['ssl_baseline_source']) if cfg.get('ssl_baseline_source') else None,
                    ssl_second_source_share=float(cfg.get('ssl_second_source_share', 0.5)),
                    second_source_all_stages=bool(cfg.get('second_source_all_stages', False)),
                    source_only_checkpoint=source_only_checkpoint,
                    stage_settings={kind: ConfigDict(stages.get(kind, {})) for kind in STAGE_KINDS},
                    references=references)
    draft = Plan(stages=(), final='', **settings)  # the settings, for the stage descriptions
    plan = [_stage(draft, 'm0', SOURCE_ONLY, start_from=None if source_only_checkpoint else INITIAL)]
    plan += _track_plan(draft, '', K, N, use_translation, use_ssl)
    final = [s for s in plan if s.kind in PLAN_M_KINDS][-1].name
    if references['oracle'] is not None:
        plan.append(_stage(draft, f'ref/{ORACLE}', ORACLE, start_from='m0' if m_init == 'source_only' else INITIAL))
    for name, track in references['tracks'].items():
        plan += _track_plan(draft, name, track.K, track.N, track.translation is not None, track.use_ssl)
    return dataclasses.replace(draft, stages=tuple(plan), final=final)


def _track_plan(plan: Plan, track: str, K: int, N: int, use_translation: bool, use_ssl: bool) -> List[Stage]:
    """The stages after M(0) of the run (``track=''``) or of a reference track (under ``ref/<track>/``)."""
    prefix = f'ref/{track}/' if track else ''
    stages = []
    last_m = 'm0'  # the track's last M stage so far
    m_of_round = {0: 'm0'}  # M(k): the last M of round k
    for k in range(1, K + 1):
        translated = None
        if use_translation:
            f, translated = f'{prefix}k{k}/translation', f'{prefix}k{k}/translate'
            stages += [_stage(plan, f, TRANSLATION, k, track=track, previous_m=m_of_round[k - 1]),
                       _stage(plan, translated, TRANSLATE, k, track=track, translator=f,
                              previous_m=m_of_round[k - 1])]
        for i in range(0, N + 1 if use_ssl else 1):
            pseudo = None
            if i > 0 or (k > 1 and use_ssl and plan.ssl_from_previous_round):
                pseudo = f'{prefix}k{k}/ssl{i}'
                stages.append(_stage(plan, pseudo, PSEUDO_LABEL, k, i, track=track, label_with=last_m))
            start = {'initial': INITIAL, 'source_only': 'm0'}.get(plan.m_init, last_m if i else m_of_round[k - 1])
            last_m = f'{prefix}k{k}/m{i}'
            stages.append(_stage(plan, last_m, SSL_ADAPTATION if pseudo else ADAPTATION, k, i, track=track,
                                 start_from=start, translated=translated, pseudo_labels=pseudo))
        m_of_round[k] = last_m
    return stages


def _stage(plan: Plan, name: str, kind: str, k: int = 0, i: int = 0, **fields) -> Stage:
    stage = Stage(name, kind, k, i, **fields)
    return dataclasses.replace(stage, what=describe(plan, stage))


def describe(plan: Plan, stage: Stage) -> str:
    """What a stage trains or makes, in the paper's notation (``bdl_state.json``'s ``plan_details``, the console)."""
    k, i = stage.k, stage.i
    translates = plan.translates(stage.track)
    source = f"S'({k})" if translates else 'S'
    m = f'{stage.track}: ' if stage.track else ''  # a reference track's models are named after it
    if stage.kind == SOURCE_ONLY:
        return 'M(0) imported, evaluated' if plan.source_only_checkpoint else 'M(0) on S'
    if stage.kind == ORACLE:
        return 'oracle: M on the target\'s labelled train split (reference)'
    baseline = plan.baseline_settings(stage.track) if translates else None
    if stage.kind == TRANSLATION:
        if baseline is not None:
            settings = ', '.join(f'{key}={value}' for key, value in baseline.items() if key != 'type')
            return f'{m}{baseline["type"]}({settings}) fitted on T, in F({k})\'s place (no training)'
        return (f'{m}F({k}), perceptual loss through {m}M({k - 1})' if plan.perceptual else
                f'{m}F({k}), plain CycleGAN')
    if stage.kind == TRANSLATE:
        return f"{m}S'({k}) = {baseline['type'] if baseline else 'F'}({k})(S)"
    if stage.kind == PSEUDO_LABEL:
        return f'{m}pseudo labels of T from {_labeller(stage)}'
    if plan.second_copy(stage):  # rows 17, 21, 22
        second = plan.ssl_baseline_source['type'] + '(S)' if plan.ssl_baseline_source else 'S'
        p = plan.ssl_second_source_share
        source = {1: second, .5: f'{source} + {second}'}.get(p, f'{source} + {second} ({p:.0%} {second})')
    if stage.kind == ADAPTATION:
        return f'{m}M_0({k}) on {source} + T'
    return f'{m}M_{i}({k}) on {source} + T + pseudo labels'


def _labeller(stage: Stage) -> str:
    """The model a pseudo-label stage labels T with: M_(i-1)(k), or M(k-1) for ``k{k}/ssl0``."""
    return f'M_{stage.i - 1}({stage.k})' if stage.i else f'M({stage.k - 1})'


# ------------------------------------------------------------------------------------------------ printing
def _model_name(plan: Plan, name: Optional[str]) -> str:
    """How :func:`format_plan` names an input: the model or data a stage wrote, with its stage."""
    if name is None:
        return '-'
    if name == INITIAL:
        return 'initial weights (init_weights.pth)'
    stage = plan.get(name)
    k, m = stage.k, f'{stage.track}: ' if stage.track else ''
    what = {TRANSLATION: f'{m}F({k})', TRANSLATE: f"{m}S'({k})",
            PSEUDO_LABEL: f'{m}T labelled by {_labeller(stage)}'}
    return f'{what.get(stage.kind, stage.model_label)} [{name}]'


def _writes(plan: Plan, stage: Stage) -> str:
    if stage.kind in M_KINDS:
        return f'{stage.model_label} [{stage.name}/final_model.pth, segmentor.pth]'
    if stage.kind == TRANSLATION:
        return f'{_model_name(plan, stage.name)}'.replace(f'[{stage.name}]', f'[{stage.name}/]')
    if stage.kind == TRANSLATE:
        return f"S' images [{stage.name}/]"
    return f'pseudo labels [{stage.name}/]'


def format_plan(plan: Plan, units: Optional[Dict[str, dict]] = None) -> str:
    """The plan as the paper's Algorithm 1: each stage, what it trains or makes, what it reads and writes, and
    (``units``: ``{stage name: dict(units, unit)}``) its planned work. ``?``: not known (e.g. data not there)."""
    track_names, share = list(plan.references['tracks']), plan.ssl_second_source_share
    switches = ''.join(f', {key}=True' for key in ('ssl_from_previous_round', 'ssl_untranslated_source',
                                                    'second_source_all_stages') if getattr(plan, key))
    lines = [f'Algorithm 1: K={plan.K} rounds of F then M, N={plan.N if plan.use_ssl else 0} SSL rounds each '
             f'(use_translation={plan.use_translation}, use_ssl={plan.use_ssl}, perceptual={plan.perceptual}, '
             f"m_init='{plan.m_init}'{switches}"
             f"{', ssl_baseline_source=' + plan.ssl_baseline_source['type'] if plan.ssl_baseline_source else ''}"
             f"{'' if share == 0.5 else f', ssl_second_source_share={share:g}'}); "
             f"{len(plan)} stages; final model: {plan.final_stage.model_label} "
             f'[{plan.final}]']
    if plan.references['oracle'] is not None or track_names:
        lines[0] += '; references: ' + ', '.join(([ORACLE] if plan.references['oracle'] is not None else [])
                                                 + track_names)
    width = max(len(s.name) for s in plan)
    header = None
    for n, stage in enumerate(plan, 1):
        group = ('references' if stage.track or stage.kind == ORACLE else
                 'input: S (labelled), T (unlabelled)' if stage.k == 0 else f'round k = {stage.k}')
        if group != header:
            lines.append(f'{group}:')
            header = group
        work = ''
        if units is not None:
            planned = units.get(stage.name) or {}
            count = '?' if planned.get('units') is None else planned['units']
            unit = planned.get('unit') or 'iter'
            work = f'  ({count} {unit}s)' if stage.kind != SOURCE_ONLY or not plan.source_only_checkpoint else ''
        lines.append(f'  {n:>2}. {stage.name:<{width}}  {stage.what}{work}')
        reads = [f'{ROLE_NAMES[role]}: {_model_name(plan, name)}' for role, name in stage.inputs.items()]
        if stage.kind == SOURCE_ONLY and plan.source_only_checkpoint:
            reads.append(f'checkpoint: {plan.source_only_checkpoint}')
        lines.append(f'      {"":<{width}}  reads  {"; ".join(reads) if reads else "-"}')
        lines.append(f'      {"":<{width}}  writes {_writes(plan, stage)}')
    return '\n'.join(lines)
