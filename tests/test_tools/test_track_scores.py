"""tools/analysis_tools/track_scores.py: label-free scores of each track's M on the target train images (hand-computed
on tiny probabilities, one call or image by image; end to end on a run state and stage dirs this test writes)."""
import json
import math
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from toy_helpers import load_tool, write_bdl_config

from bdl_mm.apis.m_model import build_m

TOOL = 'analysis_tools/track_scores.py'


def test_scores_match_a_hand_computation():
    scores = load_tool(TOOL).label_free_scores
    # one image, two classes, two pixels: one sure (1, 0), one undecided (0.5, 0.5)
    probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    got = scores(probs)
    mean_entropy = math.log(2) / 2
    marginal = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert got['confidence'] == pytest.approx(0.75)
    assert got['entropy'] == pytest.approx(mean_entropy, abs=1e-6)
    assert got['im'] == pytest.approx(marginal - mean_entropy, abs=1e-6)
    # sure pixels spread evenly over C classes: IM is its maximum, log C
    sure = torch.eye(4).reshape(1, 4, 2, 2)
    assert scores(sure)['im'] == pytest.approx(math.log(4), abs=1e-6)
    assert scores(sure)['entropy'] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match='N, C, H, W'):
        scores(torch.ones(2, 3))
    # image by image (the tool's one pass) gives the scores of the whole set at once
    both = torch.cat([probs, torch.tensor([[[[0.2, 0.9]], [[0.8, 0.1]]]])])
    sums = load_tool(TOOL).ScoreSums().add(both[:1]).add(both[1:]).result()
    assert sums == pytest.approx(scores(both))
    assert scores(both)['confidence'] == pytest.approx((1.0 + 0.5 + 0.8 + 0.9) / 4)


def _stage(run, rel, cfg_path, seed, miou=None):
    """A finished M stage: its dir with the stage's config and M's weights (random, from ``seed``), and its record in
    the run's state (done, evaluated if ``miou``)."""
    stage_dir = osp.join(run, rel)
    os.makedirs(stage_dir)
    cfg = Config.fromfile(cfg_path)
    cfg.dump(osp.join(stage_dir, 'stage_config.py'))
    torch.manual_seed(seed)
    torch.save({'state_dict': build_m(cfg).state_dict()}, osp.join(stage_dir, 'segmentor.pth'))
    record = dict(status='done', segmentor_checkpoint=osp.join(stage_dir, 'segmentor.pth'))
    return dict(record, metrics=dict(mIoU=miou)) if miou is not None else record


def test_tracks_scored_against_bdl_with_their_val_miou(tmp_path, toy_root, capsys):
    cfg_path = write_bdl_config(tmp_path / 'cfg.py', toy_root)
    run = str(tmp_path / 'run')
    stages = {'k1/m0': _stage(run, 'k1/m0', cfg_path, seed=0, miou=41.5),
              'ref/reinhard/k1/m0': _stage(run, 'ref/reinhard/k1/m0', cfg_path, seed=1, miou=43.0),
              'ref/same/k1/m0': _stage(run, 'ref/same/k1/m0', cfg_path, seed=0),  # BDL's weights: agrees everywhere
              'ref/fda/k1/m0': dict(status='running')}  # not finished: not scored
    plan = ['m0', 'k1/m0', 'ref/oracle', 'ref/reinhard/k1/m0', 'ref/same/k1/m0', 'ref/fda/k1/m0']
    with open(osp.join(run, 'bdl_state.json'), 'w') as f:
        json.dump(dict(plan=plan, stages=stages), f)
    out = tmp_path / 'scores.json'
    rows = load_tool(TOOL).main([run, '--stages', 'k1/m0', '--json', str(out)])
    assert [r['track'] for r in rows] == ['BDL', 'reinhard', 'same']
    bdl, reinhard, same = rows
    assert 'agreement' not in bdl
    assert same['agreement'] == 1.0
    assert same['entropy'] == pytest.approx(bdl['entropy']) and same['im'] == pytest.approx(bdl['im'])
    assert 0.0 <= reinhard['agreement'] < 1.0
    num_classes = 19
    for r in rows:
        assert 1.0 / num_classes <= r['confidence'] <= 1.0
        assert 0.0 <= r['entropy'] <= math.log(num_classes) + 1e-6
    assert (bdl['val_miou'], reinhard['val_miou'], same['val_miou']) == (41.5, 43.0, None)
    assert json.loads(out.read_text()) == rows
    table = capsys.readouterr().out
    assert '| k1/m0 | reinhard |' in table and '41.5' in table
    with pytest.raises(SystemExit, match='none of the stages k1/m2'):
        load_tool(TOOL).main([run, '--stages', 'k1/m2'])
    with pytest.raises(SystemExit, match='not a BDL work dir'):
        load_tool(TOOL).main([str(tmp_path)])
    with pytest.raises(SystemExit, match='no such work dir'):
        load_tool(TOOL).main([str(tmp_path / 'missing')])
