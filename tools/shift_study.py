"""Does the procedure help on shifts it was not tuned on? One command: the toy config on several toy shift families,
several seeds each, one table.

For each family (``tools/make_toy_data.py --shift NAME``: the same source, a target shifted by colour, sensor,
texture or layout, or today's ``toy`` shift) the study writes the data once (the real converters), then runs
``tools/train.py CONFIG`` unchanged but for its data roots and ``randomness.seed``, once per seed. The config's
``train_cfg.references`` gives every column from the same run: the source-only M(0), the translation baselines in
F's place (colour transfer, FDA) through the same plan, BDL's final model (the last stage of its plan) and, for
information, its best stage, and the target-supervised oracle. Nothing is tuned per family::

    python tools/shift_study.py [--config configs/bdl_toy.py] [--families toy colour sensor texture layout
        colour_sensor texture_layout swap fog]
        [--seeds 0 1 2] [--work-dir work_dirs/shift_study] [--jobs 2 [--threads 1]]

It is resumable: a finished run is read, not rerun, and an interrupted one continues (``tools/train.py --resume``).
A finished run of another config, seed or data (its ``bdl_config.json``) stops the study with one line.
After every run it rewrites ``WORK_DIR/results.{md,json,png}``: one row per family, one column per method, each cell
the mean and standard deviation over the seeds done (n stated), the gap (oracle - source-only), and per family the
checks of the study: BDL final > source-only, BDL final >= colour transfer, BDL final within 1 point of its best
stage; and two paired differences, taken seed by seed and then averaged (BDL final - colour transfer, BDL best -
final), in which the seed's shared M(0) and noise cancel. ``--report`` writes the table from the runs finished so far
and trains nothing (a partial study, or one still running). A switch is screened on finished runs by branching them
(``tools/branch_run.py``: each run copied into the new study's ``<family>/seed<S>`` without the stages the switch
changes) and running the new study with the switch and ``--force-resume``. Each run's console goes to
``WORK_DIR/<family>/seed<S>/study.log``. Runs go seed by seed (every family's seed 0 first, so a partial study covers
every family); ``--jobs 2`` runs two side by side with one thread each (on 2 cores, more work per hour than one run on
two threads: the toy's small convolutions do not scale to a second thread). A run's figures depend slightly on its
thread count (the order of float sums), so the study records it.
"""
import argparse
import json
import math
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import time

TOOLS = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(TOOLS)
sys.path.insert(0, ROOT)
FAMILIES = ('toy', 'colour', 'sensor', 'texture', 'layout', 'colour_sensor', 'texture_layout', 'swap', 'fog')
# study columns: the reference rows of a run's results.json (bdl_mm.evaluation.results_table.reference_rows), by name
COLUMNS = (('source-only', 'source-only'), ('reinhard', 'colour transfer'), ('fda', 'FDA'), ('BDL', 'BDL final'),
           ('BDL:best', 'BDL best (val)'), ('oracle', 'oracle'))
# paired differences per seed, then their mean and sd: name -> (column, minus column)
PAIRED = {'BDL final - colour transfer': ('BDL', 'reinhard'), 'BDL best - final': ('BDL:best', 'BDL')}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Run the toy config on several toy shift families and seeds')
    parser.add_argument('--config', default=osp.join(ROOT, 'configs', 'bdl_toy.py'),
                        help='the one config of every family (default: configs/bdl_toy.py)')
    parser.add_argument('--families', nargs='+', default=list(FAMILIES[:4]), help=f'from {", ".join(FAMILIES)}')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--work-dir', default='work_dirs/shift_study')
    parser.add_argument('--data-seed', type=int, default=0, help='seed of the generated data (the same for all runs)')
    parser.add_argument('--num-source', type=int, default=48, help='size of the generated data (toy default)')
    parser.add_argument('--num-target-train', type=int, default=48)
    parser.add_argument('--num-target-val', type=int, default=8)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='more key=value overrides, the same for every family and seed')
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs side by side (default 1); each gets --threads CPU threads')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads per run (default: the CPU count divided by --jobs)')
    parser.add_argument('--force-resume', action='store_true',
                        help="resume runs whose config changed (train.py --force-resume): runs branched from another "
                        'study (tools/branch_run.py) to screen a switch')
    parser.add_argument('--dry-run', action='store_true', help='write the data and print the commands; train nothing')
    parser.add_argument('--report', action='store_true',
                        help='write results.{md,json,png} from the runs finished so far; train nothing')
    args = parser.parse_args(argv)
    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        parser.error(f'--families: unknown family {unknown[0]!r}; known: {", ".join(FAMILIES)}')
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error('--jobs and --threads must be >= 1')
    return args


def _run_tool(rel_path: str, *argv):
    """Run a script of tools/ in this process (its ``main`` with ``argv``), its console output dropped."""
    import contextlib
    import importlib.util
    import io
    spec = importlib.util.spec_from_file_location('study_' + rel_path.replace('/', '_')[:-3], osp.join(TOOLS, rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = sys.argv
    sys.argv = [rel_path, *map(str, argv)]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            module.main()
    finally:
        sys.argv = old


def make_family_data(family: str, data_dir: str, args) -> str:
    """The family's toy pair in the real formats under ``data_dir/family`` (written once, atomically: a folder
    appears complete or not at all). Each process writes into a folder of its own, so two studies sharing a work dir
    may make the same family at once: the first to finish puts its folder in place, the other keeps it and drops its
    own (the data are the same for the same settings)."""
    out = osp.join(data_dir, family)
    if osp.isfile(osp.join(out, '.complete')):
        return out
    os.makedirs(data_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'{family}.tmp.', dir=data_dir)
    _run_tool('make_toy_data.py', tmp, '--shift', family, '--seed', args.data_seed, '--num-source', args.num_source,
              '--num-target-train', args.num_target_train, '--num-target-val', args.num_target_val)
    # --no-progress: mmengine's progress bar writes to the sys.stdout it was defined with, past the redirection
    _run_tool('dataset_converters/gta5.py', osp.join(tmp, 'gta5'), '--nproc', 1, '--no-progress')
    _run_tool('dataset_converters/cityscapes.py', osp.join(tmp, 'cityscapes'), '--nproc', 1, '--no-progress')
    open(osp.join(tmp, '.complete'), 'w').close()
    if not osp.isfile(osp.join(out, '.complete')):
        shutil.rmtree(out, ignore_errors=True)  # a folder left incomplete by an older version
        try:
            os.replace(tmp, out)
        except OSError:  # another process put its folder in place first
            if not osp.isfile(osp.join(out, '.complete')):
                raise
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def run_options(args, data_root: str, seed: int) -> list:
    """The ``--cfg-options`` of one run: its seed, its family's data roots, then the study's own options."""
    src, tgt = osp.join(osp.abspath(data_root), 'gta5') + '/', osp.join(osp.abspath(data_root), 'cityscapes') + '/'
    return [f'randomness.seed={seed}', f'train_dataloader.dataset.source.data_root={src}',
            f'train_dataloader.dataset.target.data_root={tgt}', f'val_dataloader.dataset.data_root={tgt}',
            f'test_dataloader.dataset.data_root={tgt}'] + list(args.cfg_options)


def train_command(args, data_root: str, run_dir: str, seed: int):
    return [sys.executable, osp.join(TOOLS, 'train.py'), args.config, '--work-dir', run_dir, '--resume',
            *(['--force-resume'] if args.force_resume else []), '--cfg-options', *run_options(args, data_root, seed)]


def check_same_config(args, data_root: str, run_dir: str, seed: int):
    """A finished run is read only if it ran this study's config: its recorded fingerprint (``bdl_config.json``,
    which ``train.py --resume`` checks for a run still going) against the config with the run's options. F's
    ``translation.`` keys are left out (deriving them needs F's config file); the rest tells a run of another config,
    seed or data apart. A run without a record (fake runs in tests, older versions) is read as before."""
    from mmengine.config import Config, DictAction

    from bdl_mm.engine.fingerprint import changed_keys, load_fingerprint, outer_fingerprint
    record = load_fingerprint(run_dir)
    if record is None:
        return
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *run_options(args, data_root, seed)]).cfg_options)
    recorded = {k: v for k, v in record.get('config', {}).items() if not k.startswith('translation.')}
    changes = changed_keys(_comparable(recorded), _comparable(outer_fingerprint(cfg)))
    if changes:
        raise SystemExit(f'error: {run_dir} holds a finished run of another config than {args.config} with seed '
                         f'{seed} ({len(changes)} key(s), e.g. {changes[0]}); use another --work-dir')


def _comparable(fingerprint: dict) -> dict:
    """The fingerprint as a finished run is compared: every ``data_root`` resolved (symbolic links followed: a run
    whose data folder is a link to the one this study reads ran on the same data; another copy of the data is still
    another folder), and keys set to None left out (a switch added after a run was recorded is off at None, the
    project's rule for a new switch: ``--cfg-options train_cfg.NEW_SWITCH=None`` reads the older runs)."""
    out = {}
    for key, value in fingerprint.items():
        if value == 'null':
            continue
        path = json.loads(value) if key.endswith('.data_root') else None
        if isinstance(path, str):
            value = json.dumps(osp.realpath(path) + ('/' if path.endswith('/') else ''))
        out[key] = value
    return out


def run_finished(run_dir: str) -> bool:
    path = osp.join(run_dir, 'results.json')
    if not osp.isfile(path) or not osp.isfile(osp.join(run_dir, 'final_model.pth')):
        return False
    with open(path) as f:
        results = json.load(f)
    return results.get('stages_done') == results.get('stages_planned')


def run_values(run_dir: str) -> dict:
    """The study's columns of one finished run (its results.json reference rows) and its diagnostics."""
    with open(osp.join(run_dir, 'results.json')) as f:
        results = json.load(f)
    values = {}
    for row in results.get('references') or []:
        if row.get('mIoU') is not None:
            values[row['name']] = row['mIoU']
        if row.get('best_mIoU') is not None and row['name'] not in ('source-only', 'oracle'):
            values[row['name'] + ':best'] = row['best_mIoU']
    # the run's own M stages in plan order (M(0), M_0(1), M_1(1), ...): the stage table and the SSL rounds' changes
    stages = {row['model']: row['metrics'].get('mIoU') for row in results.get('rows') or []
              if not row.get('track') and (row.get('metrics') or {}).get('mIoU') is not None}
    return dict(values=values, stages=stages, diagnostics=results.get('diagnostics') or [])


STAGE = re.compile(r'^M_(\d+)\((\d+)\)$')  # M_i(k): i = 0 trains without pseudo labels, i >= 1 is an SSL round
SSL_DROP_LIMIT = 0.5  # issue 23: no SSL round may lower the family's mean mIoU by more than this


def stage_changes(labels) -> dict:
    """Each M stage after M(0) -> (the stage before it in the plan, 'ssl' for an SSL round M_i(k) with i >= 1 or
    'round' for M_0(k), which starts a round on a new S')."""
    changes = {}
    for before, label in zip(labels, labels[1:]):
        match = STAGE.match(label)
        if match:
            changes[label] = (before, 'ssl' if int(match.group(1)) >= 1 else 'round')
    return changes


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, 0
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean)**2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, sd, len(xs)


def summarise(runs: dict, families, seeds) -> dict:
    """``runs[family][seed] = run_values(...)`` -> per family and column: mean, sd, n, the per-seed values, and
    the study's checks (on the means)."""
    table = {}
    for family in families:
        done = {s: runs[family][s] for s in seeds if s in runs.get(family, {})}
        row = dict(seeds=sorted(done), columns={})
        for key, _ in COLUMNS:
            per_seed = {s: done[s]['values'].get(key) for s in done}
            mean, sd, n = mean_sd(per_seed.values())
            row['columns'][key] = dict(mean=mean, sd=sd, n=n, per_seed=per_seed)
        # paired over the seeds (the same M(0) and data in both terms): the seed's own noise cancels
        for name, (a, b) in PAIRED.items():
            pairs = {s: (done[s]['values'].get(a), done[s]['values'].get(b)) for s in done}
            per_seed = {s: x - y for s, (x, y) in pairs.items() if x is not None and y is not None}
            mean, sd, n = mean_sd(per_seed.values())
            row.setdefault('paired', {})[name] = dict(mean=mean, sd=sd, n=n, per_seed=per_seed)
        # the run's own stages (plan order of the first run read) and each stage's change from the one before it,
        # paired seed by seed: an SSL round that loses shows here, whatever the final model does
        labels = list(dict.fromkeys(label for s in done for label in done[s].get('stages') or {}))
        row['stages'] = {}
        for label in labels:
            mean, sd, n = mean_sd(done[s]['stages'].get(label) for s in done)
            row['stages'][label] = dict(mean=mean, sd=sd, n=n)
        row['changes'] = {}
        for label, (before, kind) in stage_changes(labels).items():
            per_seed = {s: done[s]['stages'][label] - done[s]['stages'][before] for s in done
                        if done[s]['stages'].get(label) is not None and done[s]['stages'].get(before) is not None}
            mean, sd, n = mean_sd(per_seed.values())
            row['changes'][label] = dict(before=before, kind=kind, mean=mean, sd=sd, n=n, per_seed=per_seed)
        col = {k: v['mean'] for k, v in row['columns'].items()}
        if col.get('oracle') is not None and col.get('source-only') is not None:
            row['gap'] = col['oracle'] - col['source-only']
        if col.get('BDL') is not None:
            row['checks'] = dict(
                beats_source_only=None if col.get('source-only') is None else col['BDL'] > col['source-only'],
                matches_colour_transfer=None if col.get('reinhard') is None else col['BDL'] >= col['reinhard'],
                final_within_1_of_best=None if col.get('BDL:best') is None else col['BDL:best'] - col['BDL'] <= 1.0)
        ssl = [c['mean'] for c in row['changes'].values() if c['kind'] == 'ssl' and c['mean'] is not None]
        if ssl:
            row.setdefault('checks', {})['ssl_rounds_hold'] = min(ssl) >= -SSL_DROP_LIMIT
        table[family] = row
    return table


def stage_labels(table: dict) -> list:
    """BDL's stage labels over every family of a summarised table, in plan order."""
    return list(dict.fromkeys(label for row in table.values() for label in row.get('stages') or {}))


def overall(table: dict) -> dict:
    """Over the families (the mean of the family means), where both are measured: BDL's final model and the FDA
    track's final model."""
    pairs = [(row['columns']['BDL']['mean'], row['columns']['fda']['mean']) for row in table.values()
             if row['columns']['BDL']['mean'] is not None and row['columns']['fda']['mean'] is not None]
    if not pairs:
        return {}
    bdl, fda = (sum(p[i] for p in pairs) / len(pairs) for i in (0, 1))
    return dict(families=len(pairs), bdl_final=bdl, fda_final=fda, above_fda=bdl > fda)


def flag_rows(runs: dict, families) -> dict:
    """Per family, over its seeds and SSL rounds (every track): do the label-free flags point at the worse pseudo
    labels? The precision of the flagged classes' kept pixels against the others' (target train labels, which no
    stage reads), from each run's pseudo-label diagnostics."""
    out = {}
    for family in families:
        rounds = [d for run in (runs.get(family) or {}).values() for d in run.get('diagnostics') or []
                  if d.get('kind') == 'pseudo_label' and d.get('precision') is not None]
        flagged = [d for d in rounds if d.get('precision_flagged') is not None
                   and d.get('precision_unflagged') is not None]
        if not rounds:
            continue
        out[family] = dict(
            rounds=len(rounds), rounds_with_flags=len(flagged),
            flagged_below_others=sum(d['precision_flagged'] < d['precision_unflagged'] for d in flagged),
            precision_flagged=mean_sd(d['precision_flagged'] for d in flagged)[0],
            precision_unflagged=mean_sd(d['precision_unflagged'] for d in flagged)[0],
            precision_all=mean_sd(d['precision'] for d in rounds)[0])
    return out


def format_flags(flags: dict) -> str:
    if not flags:
        return ''
    lines = ['| shift | SSL rounds | with flags | flagged less precise | precision: flagged | others | all kept |',
             '|---|---|---|---|---|---|---|']
    for family, f in flags.items():
        def pct(x):
            return '-' if x is None else f'{x:.1f}%'
        lines.append(f'| {family} | {f["rounds"]} | {f["rounds_with_flags"]} | {f["flagged_below_others"]} of '
                     f'{f["rounds_with_flags"]} | {pct(f["precision_flagged"])} | {pct(f["precision_unflagged"])} | '
                     f'{pct(f["precision_all"])} |')
    return '\n'.join(lines) + '\n'


def format_stages(table: dict) -> str:
    """BDL's stages per family (mean ± sd) and, per stage, its paired change from the stage before it."""
    labels = stage_labels(table)
    if not labels:
        return ''
    header = ['shift'] + labels + ['worst SSL round (paired)', f'SSL rounds >= -{SSL_DROP_LIMIT}']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for family, row in table.items():
        cells = [family]
        for label in labels:
            stage, change = (row.get('stages') or {}).get(label), (row.get('changes') or {}).get(label)
            cell = '-' if not stage or stage['mean'] is None else f'{stage["mean"]:.1f} ± {stage["sd"]:.1f}'
            if change and change['mean'] is not None:
                cell += f' ({change["mean"]:+.1f})'
            cells.append(cell)
        ssl = [(c['mean'], label) for label, c in (row.get('changes') or {}).items()
               if c['kind'] == 'ssl' and c['mean'] is not None]
        cells.append(f'{min(ssl)[0]:+.1f} ({min(ssl)[1]})' if ssl else '-')
        cells.append({True: 'yes', False: 'NO', None: '-'}[(row.get('checks') or {}).get('ssl_rounds_hold')])
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def format_table(table: dict, seeds) -> str:
    header = ['shift'] + [title for _, title in COLUMNS] + ['gap (oracle - source)', 'seeds'] + [
        f'{name} (paired)' for name in PAIRED] + ['final > source', 'final >= colour', 'final ~ best']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for family, row in table.items():
        cells = [family]
        for key, _ in COLUMNS:
            c = row['columns'][key]
            cells.append('-' if c['mean'] is None else f'{c["mean"]:.1f} ± {c["sd"]:.1f}' + (
                f' (n={c["n"]})' if c['n'] != len(seeds) else ''))
        cells.append('-' if row.get('gap') is None else f'{row["gap"]:.1f}')
        cells.append(','.join(map(str, row['seeds'])) or '-')
        for name in PAIRED:
            c = (row.get('paired') or {}).get(name) or dict(mean=None)
            cells.append('-' if c['mean'] is None else f'{c["mean"]:+.1f} ± {c["sd"]:.1f}')
        checks = row.get('checks') or {}
        for key in ('beats_source_only', 'matches_colour_transfer', 'final_within_1_of_best'):
            cells.append({True: 'yes', False: 'NO', None: '-'}[checks.get(key)])
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot(table: dict, out_path: str):
    import io

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from bdl_mm.utils.atomic_io import atomic_write_bytes
    families = list(table)
    keys = [k for k, _ in COLUMNS if k != 'BDL:best']
    titles = dict(COLUMNS)
    labels = stage_labels(table)
    fig, axes = plt.subplots(1, 2 if labels else 1, figsize=(1.6 * len(families) + 3 + (5 if labels else 0), 3.8),
                             gridspec_kw=dict(width_ratios=[1.6 * len(families) + 3, 5]) if labels else None)
    ax = axes[0] if labels else axes
    if labels:  # right: each family's BDL stages (mean over the seeds), the later stages' gains or losses at a glance
        for family in families:
            stages = table[family].get('stages') or {}
            ys = [(stages.get(label) or {}).get('mean') for label in labels]
            axes[1].plot(range(len(labels)), [y if y is not None else float('nan') for y in ys], 'o-', ms=3,
                         label=family)
        axes[1].set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
        axes[1].set_title("BDL's stages (mean over seeds)", fontsize=9)
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=6, ncol=2)
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        means = [table[f]['columns'][key]['mean'] for f in families]
        sds = [table[f]['columns'][key]['sd'] or 0 for f in families]
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(families))]
        ax.bar(xs, [m if m is not None else 0 for m in means], width, yerr=sds, capsize=2, label=titles[key])
    ax.set_xticks(range(len(families)), families)
    ax.set_ylabel('target val mIoU (%), mean ± sd over seeds')
    ax.grid(axis='y', alpha=0.3)
    # the legend in a row of its own above the axes: inside them it covered the first family's bars
    ax.legend(fontsize=7, ncol=len(keys), loc='lower center', bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_path, buf.getvalue())


def write_results(work_dir: str, runs: dict, families, seeds, config: str, threads=None):
    from bdl_mm.utils.atomic_io import atomic_write_bytes, atomic_write_json
    table = summarise(runs, families, seeds)
    md = (f'Shift study: {osp.relpath(config, ROOT) if config.startswith(ROOT) else config} on each family, seeds '
          f'{", ".join(map(str, seeds))}' + (f' ({threads} CPU threads per run)' if threads else '')
          + '; mean ± sd over the seeds done (target val mIoU, %). BDL final = the last '
          'stage of its plan; BDL best = its best stage on the val labels, for information only.\n\n'
          + format_table(table, seeds))
    over = overall(table)
    if over:
        md += (f'\nOver the {over["families"]} families (mean of the family means): BDL final {over["bdl_final"]:.1f}, '
               f'FDA track final {over["fda_final"]:.1f}: BDL above FDA: {"yes" if over["above_fda"] else "NO"}.\n')
    stages = format_stages(table)
    if stages:
        md += ("\nBDL's stages, mean ± sd over the seeds; in brackets each stage's change from the stage before it, "
               'paired seed by seed (an SSL round M_i(k), i >= 1, or the start of a round M_0(k)):\n\n' + stages)
    flags = flag_rows(runs, families)
    if flags:
        md += ('\nThe label-free flags (`unsure`, `rare`) of every SSL round, every track and seed: the precision of '
               "the flagged classes' pseudo labels against the others' (mean over the rounds with flags; target "
               'train labels, which no stage reads):\n\n' + format_flags(flags))
    atomic_write_bytes(osp.join(work_dir, 'results.md'), md.encode())
    atomic_write_json(osp.join(work_dir, 'results.json'), dict(config=config, seeds=list(seeds), threads=threads,
                                                               families=table, overall=over, flags=flags, runs=runs))
    plot(table, osp.join(work_dir, 'results.png'))
    return md


def _run_env(threads: int) -> dict:
    """The environment of one run: ``threads`` CPU threads for torch/OpenMP (several runs side by side must not
    oversubscribe the cores: OpenMP threads that share a core wait at every barrier)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def main(argv=None):
    args = parse_args(argv)
    work_dir = args.work_dir
    os.makedirs(work_dir, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    # every family's data first (written once), then the runs seed by seed: a partial study has every family
    data_dir = osp.join(work_dir, 'data')
    data_roots = {family: osp.join(data_dir, family) if args.report else make_family_data(family, data_dir, args)
                  for family in args.families}
    todo = [(family, seed) for seed in args.seeds for family in args.families]
    total = len(todo)
    runs = {}
    start = time.time()
    running = []  # (Popen, family, seed, run_dir, t0, log file)

    def read(family, seed, run_dir):
        check_same_config(args, data_roots[family], run_dir, seed)
        runs.setdefault(family, {})[seed] = run_values(run_dir)

    def wait_one():
        while True:
            for item in running:
                proc, family, seed, run_dir, t0, log = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                log.close()
                if proc.returncode != 0:
                    for other in running:  # stop the others: each resumes where it stopped
                        other[0].terminate()
                    raise SystemExit(f'error: run {family}/seed{seed} failed (exit {proc.returncode}); see '
                                     f'{run_dir}/study.log; rerun the same command to resume')
                print(f'[study] {family}, seed {seed} done in {time.time() - t0:.0f} s '
                      f'({sum(map(len, runs.values())) + 1}/{total} runs read)', flush=True)
                read(family, seed, run_dir)
                write_results(work_dir, runs, args.families, args.seeds, args.config, threads)  # a partial table
                return
            time.sleep(2)

    for n, (family, seed) in enumerate(todo, 1):
        run_dir = osp.join(work_dir, family, f'seed{seed}')
        if args.report:
            if run_finished(run_dir):
                read(family, seed, run_dir)
            else:
                print(f'[study] {family}, seed {seed}: not finished, left out', flush=True)
            continue
        command = train_command(args, data_roots[family], run_dir, seed)
        if args.dry_run:
            print(' '.join(command))
            continue
        if run_finished(run_dir):
            print(f'[study] run {n}/{total}: {family}, seed {seed}: finished earlier, read', flush=True)
            read(family, seed, run_dir)
            continue
        while len(running) >= args.jobs:
            wait_one()
        os.makedirs(run_dir, exist_ok=True)
        print(f'[study] run {n}/{total}: {family}, seed {seed} -> {run_dir} ({threads} threads; log: '
              f'{run_dir}/study.log)', flush=True)
        log = open(osp.join(run_dir, 'study.log'), 'a')
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_run_env(threads))
        running.append((proc, family, seed, run_dir, time.time(), log))
    while running:
        wait_one()
    if args.report:
        print(write_results(work_dir, runs, args.families, args.seeds, args.config, args.threads))
    elif not args.dry_run:
        print(write_results(work_dir, runs, args.families, args.seeds, args.config, threads))
        print(f'[study] {total} runs in {time.time() - start:.0f} s; {work_dir}/results.md, .json, .png')


if __name__ == '__main__':
    main()
