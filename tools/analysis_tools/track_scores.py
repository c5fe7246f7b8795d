# Copyright (c) bdl_mm contributors.
"""Label-free scores of each track's M on the target train images of a finished (or partly finished) run: does F
beat the colour transfer in its place, told without target labels?

    python tools/analysis_tools/track_scores.py WORK_DIR [WORK_DIR ...] [--stages k1/m0 k1/m2] [--json OUT.json]

For every stage given (default: the first round's M_0(1) and M_2(1), which every track has) and every track that
has it (the run's own, BDL, and each reference track ``ref/<name>/``: FDA, the colour transfer), M is loaded from the
stage's ``segmentor.pth`` with the stage's own config and run on the target's train images (the pseudo-label set,
read as the SSL stages read it; no labels). Per model:

- ``confidence``: the mean over pixels of the largest class probability;
- ``entropy``: the mean over pixels of the prediction's entropy (nats);
- ``im``: information maximisation, the entropy of the mean prediction minus the mean entropy (high when each
  pixel is sure and the classes are used evenly; the criterion of SHOT and of IM-based model selection);
- ``agreement``: for a reference track, the share of pixels where its M and BDL's M at the same stage predict the
  same class.

The run's ``results.json``, where present, adds each model's target val mIoU beside the scores, so that a study can
ask whether a label-free score ranks the tracks as the labels do (docs/experiments/shift_study.md). Nothing here
trains or picks anything. Probabilities are computed as the SSL stages compute them (``segmentor_probs``).
"""
import argparse
import glob
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/, for _bootstrap
import _bootstrap  # noqa: E402,F401  (one-line error if the stack is missing)
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from bdl_mm.apis.m_model import build_m  # noqa: E402
from bdl_mm.apis.pseudo_label import segmentor_probs  # noqa: E402
from bdl_mm.apis.target_set import as_loader_parts, target_dataset_cfg  # noqa: E402

STAGE_NAMES = {'m0': 'M_0', 'm1': 'M_1', 'm2': 'M_2'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Label-free scores of each track's M on the target train images")
    parser.add_argument('work_dirs', nargs='+', help='work dirs of Algorithm-1 runs (tools/train.py, shift_study)')
    parser.add_argument('--stages', nargs='+', default=['k1/m0', 'k1/m2'], metavar='STAGE',
                        help="M stages of the run's plan, as named in its work dir (default: k1/m0 k1/m2)")
    parser.add_argument('--json', help='also write the scores to this JSON file')
    return parser.parse_args(argv)


def label_free_scores(probs: torch.Tensor) -> dict:
    """``confidence``, ``entropy`` and ``im`` of class probabilities ``probs`` (N, C, H, W), over all pixels."""
    if probs.dim() != 4:
        raise ValueError(f'expected probabilities (N, C, H, W), got shape {tuple(probs.shape)}')
    logp = probs.clamp_min(1e-12).log()
    entropy = -(probs * logp).sum(1)
    mean = probs.mean((0, 2, 3))
    marginal = float(-(mean * mean.clamp_min(1e-12).log()).sum())
    return dict(confidence=float(probs.max(1).values.mean()), entropy=float(entropy.mean()),
                im=marginal - float(entropy.mean()))


def stage_config(stage_dir: str) -> str:
    """The config a stage dumped into its dir (one ``*.py``)."""
    found = sorted(glob.glob(osp.join(stage_dir, '*.py')))
    if len(found) != 1:
        raise FileNotFoundError(f'{stage_dir}: expected one stage config (*.py), found {len(found)}')
    return found[0]


def target_probs(stage_dir: str) -> torch.Tensor:
    """M of a finished stage on the target train images: probabilities (N, C, H, W) at the network input size."""
    cfg = Config.fromfile(stage_config(stage_dir))
    model = build_m(cfg, osp.join(stage_dir, 'segmentor.pth'))
    dataset, _, _, collate = as_loader_parts(target_dataset_cfg(cfg), 1, 0)
    out = []
    with torch.no_grad():
        for i in range(len(dataset)):
            data = model.data_preprocessor(collate([dataset[i]]), False)
            out.append(segmentor_probs(model, data['inputs'], [s.metainfo for s in data['data_samples']])[0])
    return torch.stack(out)


def val_mious(work_dir: str) -> dict:
    """``(track, model) -> mIoU`` from the run's results.json (empty when it has none)."""
    path = osp.join(work_dir, 'results.json')
    if not osp.exists(path):
        return {}
    with open(path) as f:
        rows = json.load(f).get('rows', [])
    return {(r['track'], r['model']): r['metrics'].get('mIoU') for r in rows}


def model_name(stage: str) -> str:
    """``k1/m2`` -> ``M_2(1)``."""
    k, m = stage.split('/')
    return f'{STAGE_NAMES.get(m, m)}({k[1:]})'


def tracks(work_dir: str, stage: str) -> list:
    """``[(track, stage_dir)]``: the run's own first, then each reference track that finished the stage."""
    found = []
    refs = [(osp.basename(d), d) for d in sorted(glob.glob(osp.join(work_dir, 'ref', '*')))]
    for track, root in [('', work_dir)] + refs:
        stage_dir = osp.join(root, stage)
        if osp.exists(osp.join(stage_dir, 'segmentor.pth')):
            found.append((track, stage_dir))
    return found


def score_run(work_dir: str, stages) -> list:
    mious = val_mious(work_dir)
    rows = []
    for stage in stages:
        own = None
        for track, stage_dir in tracks(work_dir, stage):
            probs = target_probs(stage_dir)
            pred = probs.argmax(1)
            row = dict(work_dir=work_dir, track=track or 'BDL', stage=stage, **label_free_scores(probs))
            if track == '':
                own = pred
            elif own is not None:
                row['agreement'] = float((pred == own).float().mean())
            name = model_name(stage)
            row['val_miou'] = mious.get((track, f'{track}: {name}' if track else name))
            rows.append(row)
    return rows


def markdown(rows) -> str:
    lines = ['| run | stage | track | confidence | entropy | IM | agreement with BDL | val mIoU (labels) |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        agree = f'{r["agreement"]:.3f}' if 'agreement' in r else '-'
        miou = f'{r["val_miou"]:.1f}' if r.get('val_miou') is not None else '-'
        lines.append(f'| {r["work_dir"]} | {r["stage"]} | {r["track"]} | {r["confidence"]:.3f} | '
                     f'{r["entropy"]:.3f} | {r["im"]:.3f} | {agree} | {miou} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for work_dir in args.work_dirs:
        if not osp.isdir(work_dir):
            raise SystemExit(f'track_scores: no such work dir: {work_dir}')
        run_rows = score_run(work_dir, args.stages)
        if not run_rows:
            raise SystemExit(f'track_scores: {work_dir} has none of the stages {" ".join(args.stages)} finished')
        rows += run_rows
    print(markdown(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == '__main__':
    main()
