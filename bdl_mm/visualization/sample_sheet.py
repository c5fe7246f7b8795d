"""A stage's sample sheet: one PNG of source, translated source, target, pseudo label, prediction and label."""
import os.path as osp
from typing import Optional

import cv2
import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmseg.registry import DATASETS

from ..datasets.uda_dataset import pseudo_label_name
from ..utils.atomic_io import atomic_write_bytes


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
