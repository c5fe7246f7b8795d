"""Algorithm 1 as data (bdl_mm.structures.plan): the plan's stages for K, N, the ablation switches, m_init and the
reference tracks, the inputs each stage reads, the checks of the settings and the printed plan. Nothing trains."""
import dataclasses

import pytest

from bdl_mm.structures.plan import (
    INITIAL,
    M_KINDS,
    ORACLE,
    STAGE_KINDS,
    Stage,
    build_plan,
    format_plan,
    parse_references,
)

M_SETTINGS = dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=2))
STAGES = dict(source_only=M_SETTINGS, adaptation=M_SETTINGS, ssl_adaptation=M_SETTINGS,
              translation=dict(config='translation/x.py'), pseudo_label=dict(mode='class_median'))


def plan_of(**settings):
    return build_plan(dict(dict(stages=STAGES), **settings))


def inputs(plan):
    return {s.name: s.inputs for s in plan}


def test_paper_plan_k2_n2():
    plan = plan_of()
    assert plan.names == ['m0',
                          'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1', 'k1/ssl2', 'k1/m2',
                          'k2/translation', 'k2/translate', 'k2/m0', 'k2/ssl1', 'k2/m1', 'k2/ssl2', 'k2/m2']
    assert [s.kind for s in plan][:8] == ['source_only', 'translation', 'translate', 'adaptation', 'pseudo_label',
                                          'ssl_adaptation', 'pseudo_label', 'ssl_adaptation']
    assert [(s.k, s.i) for s in plan][8:] == [(2, 0), (2, 0), (2, 0), (2, 1), (2, 1), (2, 2), (2, 2)]
    assert plan.final == 'k2/m2' and plan.final_stage.model_label == 'M_2(2)'
    assert [s.model_label for s in plan if s.kind in M_KINDS] == ['M(0)', 'M_0(1)', 'M_1(1)', 'M_2(1)', 'M_0(2)',
                                                                  'M_1(2)', 'M_2(2)']
    assert len(plan) == 15 and plan[0] is plan.stages[0] and plan.get('k1/m1').i == 1
    assert plan.run_name == 'BDL' and set(STAGE_KINDS) | {ORACLE} == {s.kind for s in plan} | {ORACLE}


def test_inputs_of_each_stage_release_m_init():
    """F(k) and the diagnostics of S'(k) use M(k-1), the last M of round k-1; M_i(k) reads S'(k) and the pseudo
    labels of k{k}/ssl{i}, made with M_(i-1)(k); every M starts from the initial weights."""
    got = inputs(plan_of())
    assert got['m0'] == dict(start_from=INITIAL)
    assert got['k1/translation'] == dict(previous_m='m0')
    assert got['k1/translate'] == dict(previous_m='m0', translator='k1/translation')
    assert got['k1/m0'] == dict(start_from=INITIAL, translated='k1/translate')
    assert got['k1/ssl1'] == dict(label_with='k1/m0')
    assert got['k1/m1'] == dict(start_from=INITIAL, translated='k1/translate', pseudo_labels='k1/ssl1')
    assert got['k1/ssl2'] == dict(label_with='k1/m1')
    assert got['k2/translation'] == dict(previous_m='k1/m2')
    assert got['k2/translate'] == dict(previous_m='k1/m2', translator='k2/translation')
    assert got['k2/m2'] == dict(start_from=INITIAL, translated='k2/translate', pseudo_labels='k2/ssl2')


@pytest.mark.parametrize('m_init, starts', [
    ('initial', [INITIAL] * 7),
    ('source_only', [INITIAL] + ['m0'] * 6),
    ('previous', [INITIAL, 'm0', 'k1/m0', 'k1/m1', 'k1/m2', 'k2/m0', 'k2/m1']),
])
def test_m_init_chooses_where_each_m_starts(m_init, starts):
    plan = plan_of(m_init=m_init)
    assert [s.start_from for s in plan if s.kind in M_KINDS] == starts


def test_m_init_previous_without_ssl_chains_the_rounds():
    plan = plan_of(m_init='previous', use_ssl=False, K=3)
    assert [(s.name, s.start_from) for s in plan if s.kind in M_KINDS] == [
        ('m0', INITIAL), ('k1/m0', 'm0'), ('k2/m0', 'k1/m0'), ('k3/m0', 'k2/m0')]
    assert plan.get('k3/translation').previous_m == 'k2/m0' and plan.final == 'k3/m0'


def test_ssl_from_previous_round_labels_t_for_each_later_round_start():
    """The switch adds k{k}/ssl0 (T labelled by M(k-1)) before M_0(k) for k >= 2 only, and M_0(k) becomes an SSL
    stage on those labels; round 1, the reference tracks (K=1) and a run without SSL are unchanged."""
    plan = plan_of(m_init='previous', ssl_from_previous_round=True, K=3, N=1,
                   references=dict(oracle=dict(), reinhard=dict(translation=dict(type='Reinhard'))))
    own = [s.name for s in plan if not s.track and s.kind != ORACLE]
    assert own == ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1',
                   'k2/translation', 'k2/translate', 'k2/ssl0', 'k2/m0', 'k2/ssl1', 'k2/m1',
                   'k3/translation', 'k3/translate', 'k3/ssl0', 'k3/m0', 'k3/ssl1', 'k3/m1']
    got = inputs(plan)
    assert got['k1/m0'] == dict(start_from='m0', translated='k1/translate')
    assert got['k2/ssl0'] == dict(label_with='k1/m1') and got['k3/ssl0'] == dict(label_with='k2/m1')
    assert got['k2/m0'] == dict(start_from='k1/m1', translated='k2/translate', pseudo_labels='k2/ssl0')
    assert [plan.get(n).kind for n in ('k1/m0', 'k2/ssl0', 'k2/m0')] == ['adaptation', 'pseudo_label',
                                                                          'ssl_adaptation']
    assert plan.get('k2/ssl0').what == 'pseudo labels of T from M(1)'
    assert plan.get('k2/m0').what == "M_0(2) on S'(2) + T + pseudo labels" and plan.final == 'k3/m1'
    assert [s.name for s in plan if s.track == 'reinhard'] == [
        'ref/reinhard/k1/translation', 'ref/reinhard/k1/translate', 'ref/reinhard/k1/m0', 'ref/reinhard/k1/ssl1',
        'ref/reinhard/k1/m1']
    text = format_plan(plan)
    assert "m_init='previous', ssl_from_previous_round=True)" in text
    assert "T labelled by M(1) [k2/ssl0]" in text
    assert 'ssl_from_previous_round' not in format_plan(plan_of())
    assert plan_of(ssl_from_previous_round=True, use_ssl=False).names == plan_of(use_ssl=False).names


@pytest.mark.parametrize('settings, names', [
    (dict(K=1, N=1), ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1']),
    (dict(K=1, use_ssl=False), ['m0', 'k1/translation', 'k1/translate', 'k1/m0']),
    (dict(K=1, N=1, use_translation=False), ['m0', 'k1/m0', 'k1/ssl1', 'k1/m1']),
    (dict(K=2, use_translation=False, use_ssl=False), ['m0', 'k1/m0', 'k2/m0']),
    (dict(K=1, N=3, perceptual=False), ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1',
                                        'k1/ssl2', 'k1/m2', 'k1/ssl3', 'k1/m3']),
])
def test_plan_shapes(settings, names):
    plan = plan_of(**settings)
    assert plan.names == names and plan.final == [n for n in names if '/m' in n][-1]
    if not settings.get('use_translation', True):
        assert all(s.translated is None for s in plan) and plan.get('k1/m0').what == 'M_0(1) on S + T'


def test_stage_descriptions():
    plan = plan_of(K=1, N=1)
    assert [s.what for s in plan] == [
        'M(0) on S', 'F(1), perceptual loss through M(0)', "S'(1) = F(1)(S)", "M_0(1) on S'(1) + T",
        'pseudo labels of T from M_0(1)', "M_1(1) on S'(1) + T + pseudo labels"]
    assert [s.label for s in plan] == ['M(0)', 'F(1)', None, 'M_0(1)', None, 'M_1(1)']
    assert plan_of(perceptual=False)[1].what == 'F(1), plain CycleGAN'
    fda = build_plan(dict(stages=dict(STAGES, translation=dict(type='FDA', beta=0.01)), K=1, N=1))
    assert fda[1].what == "FDA(beta=0.01) fitted on T, in F(1)'s place (no training)"
    assert fda[2].what == "S'(1) = FDA(1)(S)" and fda.run_name == 'FDA'


def test_imported_source_only():
    plan = build_plan(dict(stages={k: v for k, v in STAGES.items() if k != 'source_only'}, K=1, use_ssl=False,
                           source_only_checkpoint='/x/m0.pth'))
    assert plan[0].start_from is None and plan[0].inputs == {} and plan[0].what == 'M(0) imported, evaluated'
    text = format_plan(plan)
    assert 'checkpoint: /x/m0.pth' in text


def test_reference_tracks_and_oracle():
    references = dict(oracle=dict(), fda=dict(translation=dict(type='FDA', beta=0.01)),
                      f=dict(translation=dict(config='translation/x.py')), adv=dict(translation=None, use_ssl=False))
    plan = plan_of(m_init='source_only', N=1, references=references)
    own = ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1',
           'k2/translation', 'k2/translate', 'k2/m0', 'k2/ssl1', 'k2/m1']
    fda = ['ref/fda/k1/translation', 'ref/fda/k1/translate', 'ref/fda/k1/m0', 'ref/fda/k1/ssl1', 'ref/fda/k1/m1']
    f_track = [f'ref/f/k{k}/{n}' for k in (1, 2) for n in ('translation', 'translate', 'm0', 'ssl1', 'm1')]
    assert plan.names == own + ['ref/oracle'] + fda + f_track + ['ref/adv/k1/m0']
    # K defaults to 1 for a baseline or no translation (they do not depend on M), to the run's K for F
    assert {n: t.K for n, t in plan.references['tracks'].items()} == dict(fda=1, f=2, adv=1)
    assert plan.final == 'k2/m1'  # the run's own final model, not a reference's
    oracle = plan.get('ref/oracle')
    assert (oracle.track, oracle.start_from, oracle.model_label) == ('', 'm0', 'oracle')
    assert plan_of(references=dict(oracle=dict())).get('ref/oracle').start_from == INITIAL
    # a track starts from the run's M(0) and reads its own F and S'
    assert plan.get('ref/fda/k1/translation').previous_m == 'm0'
    assert plan.get('ref/fda/k1/m1').inputs == dict(start_from='m0', translated='ref/fda/k1/translate',
                                                    pseudo_labels='ref/fda/k1/ssl1')
    assert plan.get('ref/f/k2/translation').previous_m == 'ref/f/k1/m1'
    assert plan.get('ref/f/k2/translation').what == 'f: F(2), perceptual loss through f: M(1)'
    assert plan.get('ref/fda/k1/ssl1').label_with == 'ref/fda/k1/m0'
    assert plan.get('ref/adv/k1/m0').inputs == dict(start_from='m0')
    assert plan.get('ref/adv/k1/m0').what == 'adv: M_0(1) on S + T'
    assert plan.get('ref/fda/k1/m1').model_label == 'fda: M_1(1)'
    assert plan.run_name == 'BDL'


@pytest.mark.parametrize('settings, message', [
    (dict(K=0), r'^train_cfg\.K must be an integer >= 1, got 0$'),
    (dict(N='2'), r"^train_cfg\.N must be an integer >= 1, got '2'$"),
    (dict(m_init='last'), r"^train_cfg\.m_init must be 'initial', 'previous' or 'source_only'"),
    (dict(stages=dict(STAGES, finetune={})), r'^train_cfg\.stages\.finetune: unknown stage name'),
    (dict(stages=dict(adaptation=M_SETTINGS)), r'^train_cfg\.stages\.source_only is missing'),
    (dict(references=dict(x=dict(translation=None, seeds=3))), r'^train_cfg\.references\.x\.seeds: unknown key'),
    (dict(references=dict(x=dict(translation=None, N=0))), r'^train_cfg\.references\.x\.N must be an integer'),
    (dict(references={'a/b': dict(translation=None)}), r'^train_cfg\.references\.a/b: a track name must be'),
    (dict(references=dict(oracle=True)), r'^train_cfg\.references\.oracle must be a dict'),
    (dict(references=dict(x=dict(beta=1))), r'^train_cfg\.references\.x must be a dict with a translation'),
])
def test_bad_settings_fail_in_one_line(settings, message):
    with pytest.raises(ValueError, match=message) as info:
        plan_of(**settings)
    assert '\n' not in str(info.value)


def test_settings_not_needed_by_the_ablation_may_be_missing():
    assert plan_of(stages=dict(source_only=M_SETTINGS, adaptation=M_SETTINGS), use_translation=False,
                   use_ssl=False).names == ['m0', 'k1/m0', 'k2/m0']


def test_parse_references_defaults():
    refs = parse_references(dict(t=dict(translation=dict(config='x.py'))), K=3, N=4, use_ssl=False)
    assert refs['oracle'] is None and dict(refs['tracks']['t']) == dict(
        translation=dict(config='x.py'), K=3, N=4, use_ssl=False)
    assert parse_references(None) == dict(oracle=None, tracks={})


def test_stage_is_a_frozen_value():
    stage = Stage('k1/m0', 'adaptation', 1, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stage.k = 2
    assert stage == Stage('k1/m0', 'adaptation', 1, 0) and len({stage, Stage('k1/m0', 'adaptation', 1, 0)}) == 1
    assert repr(stage) == 'Stage(k1/m0, adaptation)'


def test_format_plan_reads_like_algorithm_1():
    plan = plan_of(K=1, N=1, references=dict(oracle=dict()))
    units = {s.name: dict(units=2, unit='iter') for s in plan}
    units['k1/translate'] = dict(units=None, unit='image')
    text = format_plan(plan, units)
    lines = text.splitlines()
    assert lines[0].startswith('Algorithm 1: K=1') and 'final model: M_1(1) [k1/m1]' in lines[0]
    assert 'references: oracle' in lines[0]
    assert 'round k = 1:' in lines and 'references:' in lines
    for stage in plan:
        assert f'. {stage.name} ' in text and stage.what in text
    assert sum(line.strip().startswith('reads') for line in lines) == len(plan)
    assert sum(line.strip().startswith('writes') for line in lines) == len(plan)
    body = text[text.index('k1/m1 '):]
    assert "starts from: initial weights" in body and "S': S'(1) [k1/translate]" in body
    assert 'pseudo labels: T labelled by M_0(1) [k1/ssl1]' in body
    assert 'M(k-1): M(0) [m0]; applies: F(1) [k1/translation]' in text
    assert '(2 iters)' in text and '(? images)' in text
    assert 'writes M_1(1) [k1/m1/final_model.pth, segmentor.pth]' in text
    assert 'iters)' not in format_plan(plan)  # no planned work given: none printed
