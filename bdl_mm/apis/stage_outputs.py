"""Outputs of the Algorithm-1 stages: atomic files, exported M checkpoints, the results table, sample sheets."""
import json
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.runner.checkpoint import get_state_dict, weights_to_cpu
from mmseg.registry import DATASETS

from ..datasets.uda_dataset import pseudo_label_name


def atomic_write_bytes(path: str, data: bytes):
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path: str, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + '\n').encode())


def save_model_checkpoint(model, path: str, submodule: Optional[str] = None, meta: Optional[dict] = None):
    """Save a model's weights as an mmengine checkpoint (``state_dict`` + ``meta``), atomically.

    DDP wrappers are stripped at every depth (``MMSeparateDistributedDataParallel`` wraps each submodule, and
    ``Runner.save_checkpoint`` would keep their ``module.`` in the keys), so a checkpoint written by a
    distributed run loads into a plain model. ``submodule='segmentor'`` saves M alone out of a BDLSegmentor
    (a plain segmentor is saved as it is).
    """
    model = getattr(model, 'module', model)
    if submodule is not None:
        model = getattr(model, submodule, model)
    state = weights_to_cpu(get_state_dict(model))
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(path) + '.', suffix='.tmp')
    os.close(fd)
    try:
        torch.save(dict(state_dict=state, meta=dict(meta or {}, source='bdl_mm')), tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def export_segmentor_checkpoint(model, path: str):
    """Save M alone (the ``segmentor`` of a BDLSegmentor, or a plain segmentor) as an mmengine checkpoint."""
    save_model_checkpoint(model, path, submodule='segmentor')


# ---------------------------------------------------------------------------------------------- results table
def results_rows(plan, state: Dict[str, dict]) -> List[dict]:
    """One row per trained M, in plan order: label, stage, metrics and the SSL kept-pixel ratio."""
    rows = []
    for stage in plan:
        result = state.get(stage.name)
        if result is None or 'metrics' not in result:
            continue
        rows.append(dict(model=result.get('label', stage.model_label), stage=stage.name,
                         metrics=result['metrics'], kept_ratio=result.get('kept_ratio')))
    return rows


def format_results_table(plan, state: Dict[str, dict], cfg, work_dir: str) -> str:
    """Write ``results.md``, ``results.json`` and ``results.png`` (Table 2 of the paper), each atomically, and return
    the Markdown. Algorithm 1 calls it after every stage: a run that stops halfway leaves the table so far, marked
    partial (``results.json``: ``stages_done`` < ``stages_planned``)."""
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
    done = sum((state.get(s.name) or {}).get('status') == 'done' for s in plan)
    partial = '' if done == len(plan) else f'\npartial: {done} of {len(plan)} stages done\n'
    atomic_write_bytes(osp.join(work_dir, 'results.md'), (table + partial).encode())
    atomic_write_json(osp.join(work_dir, 'results.json'),
                      dict(classes=list(classes), rows=rows, stages_done=done, stages_planned=len(plan)))
    if rows:
        plot_results(rows, osp.join(work_dir, 'results.png'))
    return table


def plot_results(rows: List[dict], out_path: str):
    """mIoU of each M of the run, in order (the progression of Table 2 as a picture)."""
    import matplotlib
    matplotlib.use('Agg')
    import io

    import matplotlib.pyplot as plt
    labels = [r['model'] for r in rows]
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 2, 3.2))
    for key, style in (('mIoU', 'o-'), ('mIoU16', 's--'), ('mIoU13', '^:')):
        values = [r['metrics'].get(key, float('nan')) for r in rows]
        if any(v == v for v in values):
            ax.plot(range(len(rows)), values, style, label=key)
    ax.set_xticks(range(len(rows)), labels)
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


def _class_names(cfg) -> tuple:
    try:
        dataset_cfg = cfg.val_dataloader.dataset
        dataset_cls = DATASETS.get(dataset_cfg.type)
        return tuple(dataset_cls.METAINFO['classes'])
    except Exception:  # noqa: BLE001 - a table without class columns is still useful
        return ()


# ---------------------------------------------------------------------------------------------- sample sheet
def _colorize(label: np.ndarray, palette) -> np.ndarray:
    """trainId map -> BGR image (255 = black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:len(palette)] = np.asarray(palette, dtype=np.uint8)[:, ::-1]  # palette is RGB, cv2 wants BGR
    return lut[label.astype(np.uint8)]


def _panel(img: np.ndarray, title: str, height: int) -> np.ndarray:
    scale = height / img.shape[0]
    img = cv2.resize(img, (max(1, round(img.shape[1] * scale)), height), interpolation=cv2.INTER_NEAREST)
    bar = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def save_sample_sheet(model, cfg, out_path: str, source_cfg=None, translated_dir: Optional[str] = None,
                      pseudo_label_dir: Optional[str] = None, height: int = 192):
    """One PNG a person can look at: source, translated source, target, pseudo label, prediction, label.

    ``cfg`` is the M stage's config: its UDA train dataset gives the target files, its val dataset the image the
    model predicts on; ``source_cfg`` is the original source dataset (default: the stage's own source, which
    points to the translated copy when there is one).
    """
    train_ds = cfg.get('train_dataloader', {}).get('dataset', {})  # absent for an evaluated-only (imported) M
    source_cfg = source_cfg if source_cfg is not None else train_ds.get('source', train_ds)
    panels = []
    source = DATASETS.build(_listing_only(source_cfg))
    first = source.get_data_info(0)
    panels.append(_panel(cv2.imread(first['img_path']), 'source', height))
    if translated_dir:
        rel = osp.relpath(first['img_path'], osp.join(source_cfg.get('data_root', ''),
                                                      source_cfg.data_prefix.get('img_path', '')))
        translated = cv2.imread(osp.join(translated_dir, rel))
        if translated is not None:
            panels.append(_panel(translated, 'translated source', height))
    if 'target' in train_ds:
        target = DATASETS.build(_listing_only(train_ds.target))
        t0 = target.get_data_info(0)
        panels.append(_panel(cv2.imread(t0['img_path']), 'target', height))
        if pseudo_label_dir:
            name = pseudo_label_name(t0['img_path'], target.data_prefix['img_path'])
            pl = cv2.imread(osp.join(pseudo_label_dir, name), cv2.IMREAD_UNCHANGED)
            if pl is not None:
                panels.append(_panel(_colorize(pl, target.metainfo['palette']), 'pseudo label', height))
    val = DATASETS.build(cfg.val_dataloader.dataset)
    item = val[0]
    model.eval()
    with torch.no_grad():
        pred = model.test_step(pseudo_collate([item]))[0]
    palette = val.metainfo['palette']
    panels.append(_panel(cv2.imread(val.get_data_info(0)['img_path']), 'target val', height))
    panels.append(_panel(_colorize(pred.pred_sem_seg.data[0].cpu().numpy(), palette), 'prediction', height))
    if 'gt_sem_seg' in pred:
        panels.append(_panel(_colorize(pred.gt_sem_seg.data[0].cpu().numpy(), palette), 'label', height))
    sheet = np.concatenate(panels, axis=1)
    ok, buf = cv2.imencode('.png', sheet)
    if not ok:
        raise RuntimeError(f'could not encode the sample sheet {out_path}')
    atomic_write_bytes(out_path, buf.tobytes())
    return out_path


def _listing_only(dataset_cfg):
    """The dataset config without its pipeline: only the file listing is needed."""
    cfg = dict(dataset_cfg)
    cfg['pipeline'] = []
    return cfg
