# Copyright (c) bdl_mm contributors.
"""Label-free scores of each track's M on the target train images of a finished (or partly finished) run: does F
beat the colour transfer in its place, told without target labels?

    python tools/analysis_tools/track_scores.py WORK_DIR [WORK_DIR ...] [--stages k1/m0 k1/m2] [--json OUT.json]

For every stage given (default: the first round's M_0(1) and M_2(1), which every track has) and every track that
finished it (the run's own, BDL, and each reference track ``ref/<name>/``: FDA, the colour transfer; read from the
run's ``bdl_state.json``, so a run still going can be scored), M is loaded from the stage's ``segmentor.pth`` with the
stage's own config, and all of them go once over the target's train images (the pseudo-label set, read as the SSL
stages read it; no labels), one image at a time. Per model:

- ``confidence``: the mean over pixels of the largest class probability;
- ``entropy``: the mean over pixels of the prediction's entropy (nats);
- ``im``: information maximisation, the entropy of the mean prediction minus the mean entropy (high when each
  pixel is sure and the classes are used evenly; the criterion of SHOT and of IM-based model selection);
- ``agreement``: for a reference track, the share of pixels where its M and BDL's M at the same stage predict the
  same class.

Each stage's target val mIoU, from the run's state, stands beside the scores, so that a study can ask whether a
label-free score ranks the tracks as the labels do (docs/experiments/shift_study.md). Nothing here trains or picks
anything. Probabilities are computed as the SSL stages compute them (``segmentor_probs``).
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
from bdl_mm.engine.run_status import StatusError, read_state  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Label-free scores of each track's M on the target train images")
    parser.add_argument('work_dirs', nargs='+', help='work dirs of Algorithm-1 runs (tools/train.py, shift_study)')
    parser.add_argument('--stages', nargs='+', default=['k1/m0', 'k1/m2'], metavar='STAGE',
                        help="M stages of the run's plan, as named in its work dir (default: k1/m0 k1/m2)")
    parser.add_argument('--json', help='also write the scores to this JSON file')
    return parser.parse_args(argv)


class ScoreSums:
    """Running sums over pixels of the scores below, one image at a time (the probabilities of a whole target set
    do not fit in memory on real data)."""

    def __init__(self):
        self.pixels, self.confidence, self.entropy, self.class_sum = 0, 0., 0., None

    def add(self, probs: torch.Tensor) -> 'ScoreSums':
        """Add class probabilities ``probs`` (N, C, H, W)."""
        if probs.dim() != 4:
            raise ValueError(f'expected probabilities (N, C, H, W), got shape {tuple(probs.shape)}')
        probs = probs.double()
        class_sum = probs.sum((0, 2, 3))
        self.class_sum = class_sum if self.class_sum is None else self.class_sum + class_sum
        self.pixels += probs.numel() // probs.shape[1]
        self.confidence += float(probs.max(1).values.sum())
        self.entropy += float(-(probs * probs.clamp_min(1e-12).log()).sum())
        return self

    def result(self) -> dict:
        """``confidence``, ``entropy`` and ``im`` over every pixel added."""
        mean = self.class_sum / self.pixels
        entropy = self.entropy / self.pixels
        return dict(confidence=self.confidence / self.pixels, entropy=entropy,
                    im=float(-(mean * mean.clamp_min(1e-12).log()).sum()) - entropy)


def label_free_scores(probs: torch.Tensor) -> dict:
    """``confidence``, ``entropy`` and ``im`` of class probabilities ``probs`` (N, C, H, W), over all pixels."""
    return ScoreSums().add(probs).result()


def finished_tracks(state: dict, stage: str) -> list:
    """``[(track, stage name, record)]`` of ``stage`` in the run's plan order: the run's own (track ``''``), then
    each reference track's ``ref/<name>/<stage>``; only stages done, with M's weights."""
    found = []
    for name in state['plan']:
        parts = name.split('/', 2)
        track = '' if name == stage else parts[1] if parts[0] == 'ref' and parts[2:] == [stage] else None
        record = state.get('stages', {}).get(name) or {}
        if track is not None and record.get('status') == 'done' and record.get('segmentor_checkpoint'):
            found.append((track, name, record))
    return found


def stage_config(stage_dir: str) -> str:
    """The config a stage dumped into its dir (one ``*.py``)."""
    found = sorted(glob.glob(osp.join(stage_dir, '*.py')))
    if len(found) != 1:
        raise FileNotFoundError(f'{stage_dir}: expected one stage config (*.py), found {len(found)}')
    return found[0]


def score_stage(work_dir: str, stage: str, tracks: list) -> list:
    """One pass over the target train images with every track's M of ``stage``: a row per track."""
    models, dataset, collate = [], None, None
    for _, _, record in tracks:
        ckpt = record['segmentor_checkpoint']
        cfg = Config.fromfile(stage_config(osp.dirname(ckpt)))
        models.append(build_m(cfg, ckpt))
        if dataset is None:  # the same target set for every track
            dataset, _, _, collate = as_loader_parts(target_dataset_cfg(cfg), 1, 0)
    sums = [ScoreSums() for _ in models]
    same, pixels = [0] * len(models), 0
    with torch.no_grad():
        for i in range(len(dataset)):
            preds = []
            for model, acc in zip(models, sums):
                data = model.data_preprocessor(collate([dataset[i]]), False)
                probs = segmentor_probs(model, data['inputs'], [s.metainfo for s in data['data_samples']])
                acc.add(probs)
                preds.append(probs.argmax(1))
            pixels += preds[0].numel()
            same = [n + int((p == preds[0]).sum()) for n, p in zip(same, preds)]
    rows = []
    for (track, _, record), acc, n in zip(tracks, sums, same):
        row = dict(work_dir=work_dir, track=track or 'BDL', stage=stage, **acc.result())
        if track and tracks[0][0] == '':
            row['agreement'] = n / pixels
        row['val_miou'] = (record.get('metrics') or {}).get('mIoU')
        rows.append(row)
    return rows


def score_run(work_dir: str, stages) -> list:
    """Rows of every finished track of each stage in ``stages`` (the run's ``bdl_state.json``: its plan, each stage's
    weights, and its val mIoU where it was evaluated)."""
    state = read_state(work_dir)
    rows = []
    for stage in stages:
        tracks = finished_tracks(state, stage)
        if tracks:
            rows += score_stage(work_dir, stage, tracks)
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
        try:
            run_rows = score_run(work_dir, args.stages)
        except StatusError as e:
            raise SystemExit(f'track_scores: {e}') from None
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
