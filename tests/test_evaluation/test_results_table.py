"""The results table of a run: rows, columns, missing values, partial runs."""
import json
import math
import os

from mmengine.config import Config

from bdl_mm.evaluation.results_table import format_results_table
from bdl_mm.structures.plan import Stage


def test_results_table_rows_columns_and_missing_values(tmp_path):
    plan = [Stage('m0', 'source_only'), Stage('k1/translation', 'translation', 1), Stage('k1/m0', 'adaptation', 1, 0),
            Stage('k1/ssl1', 'pseudo_label', 1, 1), Stage('k1/m1', 'ssl_adaptation', 1, 1)]
    metrics = {'IoU.road': 80.0, 'IoU.sidewalk': math.nan, 'mIoU': 40.0, 'mIoU16': 41.25, 'mIoU13': 42.5}
    state = {
        'm0': dict(label='M(0)', metrics=dict(metrics, mIoU=33.6)),
        'k1/translation': dict(checkpoint='f.pth'),
        'k1/m0': dict(label='M_0(1)', metrics=metrics),
        'k1/m1': dict(label='M_1(1)', metrics=dict(metrics, mIoU=46.8), kept_ratio=0.789),
    }
    cfg = Config(dict(val_dataloader=dict(dataset=dict(type='CityscapesDataset'))))
    import bdl_mm  # noqa: F401  (registers nothing needed here, but the dataset registry lookup uses mmseg's)
    table = format_results_table(plan, state, cfg, str(tmp_path))
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].split('|')[1:-1]]
    assert header[:4] == ['model', 'stage', 'road', 'sidewalk'] and header[-4:] == ['mIoU', 'mIoU16', 'mIoU13',
                                                                                   'SSL kept']
    rows = [[c.strip() for c in line.split('|')[1:-1]] for line in lines[2:]]
    assert [r[0] for r in rows] == ['M(0)', 'M_0(1)', 'M_1(1)']  # M stages only, plan order
    assert rows[2][2:4] == ['80.0', '-']  # NaN IoU (class absent) shows as '-'
    assert rows[2][-4] == '46.8' and rows[2][-1] == '78.9%' and rows[0][-1] == '-'
    saved = json.load(open(tmp_path / 'results.json'))
    assert [r['model'] for r in saved['rows']] == ['M(0)', 'M_0(1)', 'M_1(1)']
    assert (tmp_path / 'results.md').read_text() == table + '\npartial: 0 of 5 stages done\n'
    assert (saved['stages_done'], saved['stages_planned']) == (0, 5)
    assert (tmp_path / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_results_after_each_stage_are_marked_partial_until_the_last(tmp_path):
    """Live results: the loop rewrites the table after every stage; a run stopped halfway leaves its rows so far."""
    plan = [Stage('m0', 'source_only'), Stage('k1/m0', 'adaptation', 1, 0), Stage('k1/ssl1', 'pseudo_label', 1, 1),
            Stage('k1/m1', 'ssl_adaptation', 1, 1)]
    cfg = Config(dict(val_dataloader=dict(dataset=dict(type='CityscapesDataset'))))
    state = {'m0': dict(status='done', label='M(0)', metrics={'mIoU': 30.0})}
    format_results_table(plan, state, cfg, str(tmp_path))
    md = (tmp_path / 'results.md').read_text()
    assert md.endswith('\npartial: 1 of 4 stages done\n') and '| M(0) | m0 |' in md
    assert json.load(open(tmp_path / 'results.json'))['stages_done'] == 1
    state.update({'k1/m0': dict(status='done', label='M_0(1)', metrics={'mIoU': 35.0}),
                  'k1/ssl1': dict(status='done', kept_ratio=0.7),
                  'k1/m1': dict(status='done', label='M_1(1)', metrics={'mIoU': 37.5}, kept_ratio=0.7)})
    table = format_results_table(plan, state, cfg, str(tmp_path))
    assert (tmp_path / 'results.md').read_text() == table and 'partial' not in table
    saved = json.load(open(tmp_path / 'results.json'))
    assert [r['metrics']['mIoU'] for r in saved['rows']] == [30.0, 35.0, 37.5] and saved['stages_done'] == 4
    assert sorted(os.listdir(tmp_path)) == ['results.json', 'results.md', 'results.png']  # no temporary files left


def test_ssl_table_shows_the_label_free_flags_and_their_precision(tmp_path):
    plan = [Stage('m0', 'source_only'), Stage('k1/ssl1', 'pseudo_label', 1, 1), Stage('k1/ssl2', 'pseudo_label', 1, 2)]
    cfg = Config(dict(val_dataloader=dict(dataset=dict(type='CityscapesDataset'))))
    diag = dict(kept_ratio=0.61, flagged={'pole': ['unsure'], 'light': ['unsure', 'rare']}, precision=93.04,
                precision_flagged=12.5, precision_unflagged=95.25)
    state = {'m0': dict(status='done', label='M(0)', metrics={'mIoU': 30.0}),
             'k1/ssl1': dict(status='done', diagnostics=diag),
             'k1/ssl2': dict(status='done', diagnostics=dict(kept_ratio=0.6, flagged={}))}  # no labels: no precision
    table = format_results_table(plan, state, cfg, str(tmp_path))
    assert '| k1/ssl1 | 61.0% | pole (unsure), light (unsure+rare) | 93.0% | 12.5% | 95.2% |' in table
    assert '| k1/ssl2 | 60.0% | none | - | - | - |' in table
    assert json.load(open(tmp_path / 'results.json'))['diagnostics'][0]['flagged']['light'] == ['unsure', 'rare']
