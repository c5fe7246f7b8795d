# Copyright (c) bdl_mm contributors.
"""tools/compare_recipes.py: two recipes' shift studies side by side, with the later-stage checks, by hand."""
import pytest
from test_shift_study import TINY, fake_run, study
from toy_helpers import load_tool

compare = load_tool('compare_recipes.py')
LABELS = ['M(0)', 'M_0(1)', 'M_1(1)', 'M_2(1)']
REFS = {'source-only': 30, 'reinhard': 40, 'fda': 41, 'oracle': 60}


def make_study(work, family_stages, best):
    """A finished shift study (its --report) of fake runs: family -> {seed: M stages}; BDL final = the last."""
    for family, seeds in family_stages.items():
        for seed, values in seeds.items():
            fake_run(work / family / f'seed{seed}', dict(REFS, BDL=values[-1]), best[family][seed],
                     dict(zip(LABELS, values)))
    families = list(family_stages)
    study.main(['--config', 'missing.py', '--families', *families, '--seeds', '0', '1', '--work-dir', str(work),
                '--report', '--threads', '1', *TINY])


def test_recipes_side_by_side_with_their_checks(tmp_path, capsys):
    # release: its SSL rounds lose on fog (-1.0, -0.5 -> -0.75; then -2, -2 -> -2); robust: they gain
    make_study(tmp_path / 'release', {'fog': {0: (20, 40, 39, 37), 1: (22, 42, 41.5, 39.5)},
                                      'swap': {0: (20, 30, 31, 31), 1: (20, 30, 30, 30)}},
               best={'fog': {0: 40, 1: 42}, 'swap': {0: 31, 1: 30}})
    make_study(tmp_path / 'robust_a', {'fog': {0: (20, 40, 42, 43), 1: (22, 42, 43, 44)}},
               best={'fog': {0: 43, 1: 44}})
    make_study(tmp_path / 'robust_b', {'colour': {0: (20, 30, 31, 32), 1: (20, 30, 31, 32)}},
               best={'colour': {0: 32, 1: 32}})
    out = tmp_path / 'out'
    assert compare.main([f'release={tmp_path / "release"}', f'robust={tmp_path / "robust_a"}',
                         f'robust={tmp_path / "robust_b"}', '--out', str(out)]) == 0
    md = (out / 'recipes.md').read_text()
    # every family, each with the recipes that ran it; the robust recipe's two studies are merged
    assert '| fog | release |' in md and '| fog | robust |' in md
    assert '| swap | release |' in md and '| swap | robust |' not in md
    assert '| colour | robust |' in md and '| colour | release |' not in md
    assert md.index('| fog |') < md.index('| swap |') < md.index('| colour |')
    assert '| fog | release | 21.0 ± 1.4 | 41.0 ± 1.4 (+20.0) | 40.2 ± 1.8 (-0.8) | 38.2 ± 1.8 (-2.0) | 0,1 | -2.0 | ' \
           'NO | NO | NO |' in md  # best 41.0 vs final 38.2; colour transfer 40 > 38.2
    assert '| fog | robust | 21.0 ± 1.4 | 41.0 ± 1.4 (+20.0) | 42.5 ± 0.7 (+1.5) | 43.5 ± 0.7 (+1.0) | 0,1 | +1.0 | ' \
           'yes | yes | yes |' in md
    assert (out / 'recipes.png').read_bytes()[:4] == b'\x89PNG'
    # each recipe keeps its colour in every panel, also where the other recipe's line is missing
    drawn = compare.plot(compare.compare(compare.parse_args([f'release={tmp_path / "release"}',
                                                             f'robust={tmp_path / "robust_a"}',
                                                             f'robust={tmp_path / "robust_b"}']).studies),
                         str(out / 'again.png'))
    assert drawn['fog'] == {'release': 'C0', 'robust': 'C1'}
    assert drawn['swap'] == {'release': 'C0'} and drawn['colour'] == {'robust': 'C1'}


def test_bad_arguments_fail_in_one_line(tmp_path):
    with pytest.raises(SystemExit):
        compare.parse_args(['release'])
    with pytest.raises(SystemExit):
        compare.parse_args([f'release={tmp_path}'])  # no results.json there


def test_many_families_are_drawn_in_a_grid(tmp_path):
    assert [compare.grid(n) for n in (1, 3, 4, 5, 9, 10)] == [(1, 1), (1, 3), (2, 2), (2, 3), (3, 3), (3, 4)]
    families = [f'family{i}' for i in range(9)]
    result = {'families': families, 'labels': LABELS,
              'rows': {f: {'robust': {'stages': {label: {'mean': 40.0 + i} for i, label in enumerate(LABELS)}}}
                       for f in families}}
    drawn = compare.plot(result, str(tmp_path / 'grid.png'))
    assert list(drawn) == families and all(d == {'robust': 'C0'} for d in drawn.values())
    header = (tmp_path / 'grid.png').read_bytes()[:24]  # PNG: the IHDR chunk holds width, then height
    width, height = int.from_bytes(header[16:20], 'big'), int.from_bytes(header[20:24], 'big')
    assert 0.9 < width / height < 1.2, (width, height)  # 3 x 3 panels, not one row 30 panels wide
