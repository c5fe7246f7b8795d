"""Two or more recipes side by side, from the shift studies that ran them (``tools/shift_study.py`` work dirs).

Each study's ``results.json`` (written after every run, or by ``tools/shift_study.py --report``) holds, per family,
BDL's stages as mean ± sd over the seeds and each stage's paired change from the stage before it. This tool puts
the recipes side by side, one row per family and recipe, and checks each recipe on what issue 23 asks of the later
stages: no SSL round lowers a family's mean by more than 0.5, the final stage within 1 point of its best, the final
stage at or above the colour transfer's track (where the studies ran the references)::

    python tools/compare_recipes.py release=work_dirs/shift_study robust=work_dirs/shift_study_robust \\
        [--out work_dirs/recipes]

A name given twice merges its studies' families (a recipe studied in two work dirs).

It writes ``OUT/recipes.md`` and ``OUT/recipes.png`` (per family, each recipe's stages; the picture shows which
later stages gain or lose at a glance). Every family any recipe ran is shown, each with the recipes that ran it
(a family one recipe lacks has that recipe's row and line left out). It trains nothing.
"""
import argparse
import io
import json
import math
import os.path as osp
import sys

TOOLS = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(TOOLS))
sys.path.insert(0, TOOLS)

from shift_study import SSL_DROP_LIMIT  # noqa: E402  (the study's own bound, one home)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Recipes side by side from their shift studies')
    parser.add_argument('studies', nargs='+', metavar='NAME=WORK_DIR',
                        help='a recipe name and the work dir of the shift study that ran it')
    parser.add_argument('--out', default='work_dirs/recipes', help='where recipes.md and recipes.png go')
    args = parser.parse_args(argv)
    studies = {}
    for item in args.studies:
        name, sep, work_dir = item.partition('=')
        if not sep or not name or not work_dir:
            parser.error(f'expected NAME=WORK_DIR, got {item!r}')
        path = osp.join(work_dir, 'results.json')
        if not osp.isfile(path):
            parser.error(f'{path} does not exist: run tools/shift_study.py --work-dir {work_dir} --report first')
        studies.setdefault(name, []).append(path)
    args.studies = studies
    return args


def load(paths) -> dict:
    """The families of one recipe's studies (``results.json`` paths), merged; a family in two of them is refused."""
    families = {}
    for path in paths:
        with open(path) as f:
            for family, row in json.load(f)['families'].items():
                if family in families:
                    raise SystemExit(f'compare_recipes: family {family} is in two studies of one recipe ({path})')
                families[family] = row
    return families


def recipe_checks(row: dict) -> dict:
    """A family row of a study -> its later-stage checks (the study's own, from ``shift_study.summarise``) and
    its worst SSL round (None where the study lacks what a check reads)."""
    changes = [c['mean'] for c in (row.get('changes') or {}).values() if c['kind'] == 'ssl' and c['mean'] is not None]
    checks = row.get('checks') or {}
    return dict(worst_ssl_round=min(changes) if changes else None,
                ssl_rounds_hold=checks.get('ssl_rounds_hold'),
                final_within_1_of_best=checks.get('final_within_1_of_best'),
                final_at_or_above_colour_transfer=checks.get('matches_colour_transfer'))


def compare(studies: dict) -> dict:
    """``{recipe: [results.json paths]}`` -> ``dict(families, labels, rows)``: the families any study ran (in the
    order they first appear), the stage labels in plan order, and per family the stages, changes and checks of each
    recipe that ran it."""
    tables = {name: load(path) for name, path in studies.items()}
    families = list(dict.fromkeys(f for t in tables.values() for f in t))
    labels = list(dict.fromkeys(label for t in tables.values() for f in families for label in
                                (t.get(f) or {}).get('stages') or {}))
    rows = {f: {name: dict(stages=t[f].get('stages') or {}, changes=t[f].get('changes') or {}, seeds=t[f]['seeds'],
                           checks=recipe_checks(t[f])) for name, t in tables.items() if f in t} for f in families}
    return dict(families=families, labels=labels, rows=rows)


def _yes(value) -> str:
    return {True: 'yes', False: 'NO', None: '-'}[value]


def format_markdown(result: dict) -> str:
    labels = result['labels']
    header = ['shift', 'recipe'] + labels + ['seeds', 'worst SSL round', f'SSL rounds >= -{SSL_DROP_LIMIT}',
                                             'final ~ best', 'final >= colour']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for family in result['families']:
        for name, row in result['rows'][family].items():
            cells = [family, name]
            for label in labels:
                stage, change = row['stages'].get(label), row['changes'].get(label)
                cell = '-' if not stage or stage.get('mean') is None else f'{stage["mean"]:.1f} ± {stage["sd"]:.1f}'
                if change and change.get('mean') is not None:
                    cell += f' ({change["mean"]:+.1f})'
                cells.append(cell)
            checks = row['checks']
            worst = checks['worst_ssl_round']
            cells += [','.join(map(str, row['seeds'])), '-' if worst is None else f'{worst:+.1f}',
                      _yes(checks['ssl_rounds_hold']), _yes(checks['final_within_1_of_best']),
                      _yes(checks['final_at_or_above_colour_transfer'])]
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def grid(n: int) -> tuple:
    """Rows and columns of the panels: one row up to three families, then a near-square grid (nine: 3 x 3)."""
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def plot(result: dict, out_path: str) -> dict:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from bdl_mm.utils.atomic_io import atomic_write_bytes
    families, labels = result['families'], result['labels']
    # one colour per recipe in every panel (a family some recipe lacks must not shift the others' colours)
    names = list(dict.fromkeys(name for family in families for name in result['rows'][family]))
    colours = {name: f'C{i % 10}' for i, name in enumerate(names)}
    rows, cols = grid(len(families))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 0.5, 3.4 * rows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(families):]:
        ax.set_visible(False)
    for ax, family in zip(axes, families):
        for name, row in result['rows'][family].items():
            ys = [(row['stages'].get(label) or {}).get('mean') for label in labels]
            ax.plot(range(len(labels)), [float('nan') if y is None else y for y in ys], 'o-', ms=3, label=name,
                    color=colours[name])
        ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
        ax.set_title(family, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[::cols]:
        ax.set_ylabel('target val mIoU (%),\nmean over seeds', fontsize=8)
    axes[0].legend(handles=[matplotlib.lines.Line2D([], [], color=colours[n], marker='o', ms=3, label=n)
                               for n in names], fontsize=7)
    drawn = {family: {line.get_label(): line.get_color() for line in ax.lines} for ax, family in zip(axes, families)}
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_path, buf.getvalue())
    return drawn  # per family, the colour of each recipe's line


def main(argv=None):
    from bdl_mm.utils.atomic_io import atomic_write_bytes
    args = parse_args(argv)
    result = compare(args.studies)
    if not result['families']:
        raise SystemExit('compare_recipes: the studies have no finished family')
    md = ('Recipes side by side: ' + ', '.join(f'{name} ({", ".join(osp.dirname(p) for p in paths)})'
                                               for name, paths in args.studies.items())
          + '. Mean ± sd over the seeds; in brackets each stage\'s change from the stage before it, paired seed by '
          'seed.\n\n' + format_markdown(result))
    atomic_write_bytes(osp.join(args.out, 'recipes.md'), md.encode())
    plot(result, osp.join(args.out, 'recipes.png'))
    print(md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
