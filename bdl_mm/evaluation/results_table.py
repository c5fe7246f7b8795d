"""The results of a run (Table 2 of the paper): ``results.md``, ``results.json`` and ``results.png``."""
import os.path as osp
from typing import Dict, List, Optional

from mmseg.registry import DATASETS

from ..structures.plan import PLAN_M_KINDS
from ..utils.atomic_io import atomic_write_bytes, atomic_write_json


def results_rows(plan, state: Dict[str, dict]) -> List[dict]:
    """One row per trained M, in plan order: label, stage, metrics, the SSL kept-pixel ratio and the track
    (``''``: the run itself; else the reference track's name, or ``'oracle'``)."""
    rows = []
    for stage in plan:
        result = state.get(stage.name)
        if result is None or 'metrics' not in result:
            continue
        track = 'oracle' if stage.kind == 'oracle' else getattr(stage, 'track', '')
        rows.append(dict(model=result.get('label', stage.model_label), stage=stage.name,
                         metrics=result['metrics'], kept_ratio=result.get('kept_ratio'), track=track))
    return rows


def reference_rows(plan, state: Dict[str, dict], run_name: str = 'BDL') -> List[dict]:
    """The comparison a UDA user asks for first (``train_cfg.references``): the source-only model M(0), the
    oracle, and per track (the run itself, named ``run_name``, then each reference track) its final model (the
    last M stage of its plan: what the track delivers, chosen without target labels) and, for information only,
    its best stage on the target val set. ``gap_closed`` = (mIoU - source-only) / (oracle - source-only).

    A row whose stage is not done yet has ``mIoU`` None."""
    def miou(stage):
        value = ((state.get(stage.name) or {}).get('metrics') or {}).get('mIoU') if stage is not None else None
        return None if value is None else float(value)

    m_kinds = PLAN_M_KINDS
    source = next((s for s in plan if s.kind == 'source_only'), None)
    oracle = next((s for s in plan if s.kind == 'oracle'), None)
    src, top = miou(source), miou(oracle)

    def gap(value):
        if value is None or src is None or top is None or abs(top - src) < 1e-9:
            return None
        return (value - src) / (top - src)

    rows = [dict(name='source-only', model='M(0)', stage=getattr(source, 'name', None), mIoU=src, gap_closed=gap(src))]
    tracks = list(dict.fromkeys(getattr(s, 'track', '') for s in plan if s.kind in m_kinds[1:]))
    for track in tracks:
        stages = [s for s in plan if s.kind in m_kinds[1:] and getattr(s, 'track', '') == track]
        final = stages[-1]
        done = [(miou(s), s) for s in stages if miou(s) is not None]
        best_value, best = max(done, key=lambda vs: vs[0]) if done else (None, None)
        rows.append(dict(name=track or run_name, model=final.model_label, stage=final.name, mIoU=miou(final),
                         gap_closed=gap(miou(final)), best_mIoU=best_value,
                         best_model=best.model_label if best is not None else None))
    if oracle is not None:
        rows.append(dict(name='oracle', model='oracle', stage=oracle.name, mIoU=top, gap_closed=gap(top)))
    return rows


def _format_reference_table(refs: List[dict]) -> str:
    lines = ['| reference | model (final) | mIoU | gap closed | best stage (val, for information) |',
             '|---|---|---|---|---|']
    for r in refs:
        gap = '-' if r.get('gap_closed') is None else f'{100 * r["gap_closed"]:.0f}%'
        best = '-' if r.get('best_mIoU') is None else f'{r["best_model"]} {r["best_mIoU"]:.1f}'
        lines.append(f'| {r["name"]} | {r["model"]} | {_fmt(r.get("mIoU"))} | {gap} | {best} |')
    return '\n'.join(lines) + '\n'


def diagnostics_rows(plan, state: Dict[str, dict]) -> List[dict]:
    """The per-stage diagnostics (``train_cfg.diagnostics``) of the translate and pseudo-label stages done, in plan
    order: ``dict(stage, kind, **diagnostics)`` without the raw image statistics."""
    rows = []
    for stage in plan:
        diag = (state.get(stage.name) or {}).get('diagnostics')
        if isinstance(diag, dict):
            rows.append(dict(stage=stage.name, kind=stage.kind,
                             **{k: v for k, v in diag.items() if k != 'statistics'}))
    return rows


def _format_diagnostics(rows: List[dict]) -> str:
    out = []
    translate = [r for r in rows if r['kind'] == 'translate']
    if translate:
        out += ["| translation | model | mIoU on S | mIoU on S' | colour distance S->T | S'->T "
                "| edges of S kept in S' |",
                '|---|---|---|---|---|---|---|']
        out += [f'| {r["stage"]} | {r.get("model", "-")} | {_fmt(r.get("miou_on_source"))} | '
                f'{_fmt(r.get("miou_on_translated"))} | {_fmt(r.get("colour_distance_source_to_target"))} | '
                f'{_fmt(r.get("colour_distance_translated_to_target"))} | {_fmt2(r.get("edge_consistency"))} |'
                for r in translate]
    ssl = [r for r in rows if r['kind'] == 'pseudo_label']
    if ssl:
        out += ['' if out else None, '| SSL round | kept | flagged classes (label-free: unsure, rare, growing) | '
                'precision of the kept pixels (target train labels) | of the flagged classes | of the others |',
                '|---|---|---|---|---|---|']
        out += [f'| {r["stage"]} | {_percent(r.get("kept_ratio"), 100)} | {_flags(r.get("flagged"))} | '
                f'{_percent(r.get("precision"))} | {_percent(r.get("precision_flagged"))} | '
                f'{_percent(r.get("precision_unflagged"))} |' for r in ssl]
    return '\n'.join(line for line in out if line is not None) + '\n'


def _flags(flagged) -> str:
    if flagged is None:
        return '-'
    return ', '.join(f'{c} ({"+".join(r)})' for c, r in flagged.items()) or 'none'


def _percent(value, scale: float = 1) -> str:
    return '-' if value is None else f'{scale * value:.1f}%'


def format_results_table(plan, state: Dict[str, dict], cfg, work_dir: str, run_name: str = 'BDL') -> str:
    """Write ``results.md``, ``results.json`` and ``results.png`` (Table 2 of the paper), each atomically, and return
    the Markdown. Algorithm 1 calls it after every stage: a run that stops halfway leaves the table so far, marked
    partial (``results.json``: ``stages_done`` < ``stages_planned``). A plan with an oracle or reference tracks
    (``train_cfg.references``) adds the reference table (:func:`reference_rows`; ``run_name`` names the run's own
    row) to all three."""
    rows = results_rows(plan, state)
    classes = _class_names(cfg)
    summary_keys = [k for k in ('mIoU', 'mIoU16', 'mIoU13', 'aAcc') if any(k in r['metrics'] for r in rows)]
    header = ['model', 'stage'] + list(classes) + summary_keys + ['SSL kept']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        m = row['metrics']
        cells = [row['model'], row['stage']]
        cells += [_fmt(m.get(f'IoU.{c}')) for c in classes]
        cells += [_fmt(m.get(k)) for k in summary_keys]
        kept = row['kept_ratio']
        cells.append('-' if kept is None else f'{100 * kept:.1f}%')
        lines.append('| ' + ' | '.join(cells) + ' |')
    table = '\n'.join(lines) + '\n'
    references = None
    if any(s.kind == 'oracle' or getattr(s, 'track', '') for s in plan):
        references = reference_rows(plan, state, run_name)
        table += '\n' + _format_reference_table(references)
    diagnostics = diagnostics_rows(plan, state)
    if diagnostics:
        table += '\n' + _format_diagnostics(diagnostics)
    done = sum((state.get(s.name) or {}).get('status') == 'done' for s in plan)
    partial = '' if done == len(plan) else f'\npartial: {done} of {len(plan)} stages done\n'
    atomic_write_bytes(osp.join(work_dir, 'results.md'), (table + partial).encode())
    atomic_write_json(osp.join(work_dir, 'results.json'),
                      dict(classes=list(classes), rows=rows, stages_done=done, stages_planned=len(plan),
                           **({} if references is None else dict(references=references)),
                           **({} if not diagnostics else dict(diagnostics=diagnostics))))
    if rows:
        plot_results(rows, osp.join(work_dir, 'results.png'), references)
    return table


def plot_results(rows: List[dict], out_path: str, references: Optional[List[dict]] = None):
    """mIoU of each M of the run, in order (the progression of Table 2 as a picture); with references, the
    source-only and oracle levels as horizontal lines and each reference track's stages as a line of its own."""
    import matplotlib
    matplotlib.use('Agg')
    import io

    import matplotlib.pyplot as plt
    own = [r for r in rows if not r.get('track')]  # M(0) and the run's own stages
    labels = [r['model'] for r in own]
    fig, ax = plt.subplots(figsize=(1.1 * len(own) + 2, 3.2 if not references else 4.2))
    for key, style in (('mIoU', 'o-'), ('mIoU16', 's--'), ('mIoU13', '^:')):
        values = [r['metrics'].get(key, float('nan')) for r in own]
        if any(v == v for v in values):
            ax.plot(range(len(own)), values, style, label=key)
    for ref in references or []:
        if ref['name'] == 'oracle' and ref.get('mIoU') is not None:
            ax.axhline(ref['mIoU'], color='green', ls='--', lw=1, label=f'oracle {ref["mIoU"]:.1f}')
        elif ref['name'] == 'source-only' and ref.get('mIoU') is not None:
            ax.axhline(ref['mIoU'], color='grey', ls=':', lw=1, label=f'source-only {ref["mIoU"]:.1f}')
    for track in dict.fromkeys(r['track'] for r in rows if r.get('track') not in ('', 'oracle', None)):
        # a track's stage j is drawn at the position of the run's M stage j (M_0(1) under M_0(1), ...)
        values = [r['metrics'].get('mIoU', float('nan')) for r in rows if r.get('track') == track]
        ax.plot(range(1, 1 + len(values)), values, 'x-.', label=f'{track} (mIoU)')
    ax.set_xticks(range(len(own)), labels)
    ax.set_ylabel('target val (%)')
    ax.grid(alpha=0.3)
    ax.legend(loc='best', fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    atomic_write_bytes(out_path, buf.getvalue())


def _fmt(value) -> str:
    """One decimal; '-' for a missing value or a class absent from the labels and predictions (NaN IoU)."""
    return '-' if value is None or value != value else f'{float(value):.1f}'


def _fmt2(value) -> str:
    """Two decimals (a correlation); '-' when missing (a run from before the figure existed)."""
    return '-' if value is None or value != value else f'{float(value):.2f}'


def _class_names(cfg) -> tuple:
    try:
        dataset_cfg = cfg.val_dataloader.dataset
        dataset_cls = DATASETS.get(dataset_cfg.type)
        return tuple(dataset_cls.METAINFO['classes'])
    except Exception:  # noqa: BLE001 - a table without class columns is still useful
        return ()
