"""tools/dress_rehearsal.py's parts, at tiny sizes (the rehearsal itself is a command: minutes to an hour per config):
SYNTHIA scenes in the real 16-bit layout that the project's converter reads back to the scene's classes, release-layout
initial weights that the project's converters turn into the config's keys, and the overrides (roots and counts only)."""
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import torch
from mmengine.config import Config
from PIL import Image
from toy_helpers import ROOT, load_tool

from bdl_mm.datasets.label_maps import cityscapes_id_to_train_id

rehearsal = load_tool('dress_rehearsal.py')
make_toy_data = load_tool('make_toy_data.py')


def test_synthia_scenes_convert_to_the_scene_classes(tmp_path, monkeypatch):
    rehearsal.make_synthia(str(tmp_path), 2, (64, 38), seed=0)
    lab16 = cv2.imread(str(tmp_path / 'synthia' / 'GT' / 'LABELS' / '0000001.png'), cv2.IMREAD_UNCHANGED)
    assert lab16.dtype == np.uint16 and lab16.shape == (38, 64, 3)  # 16-bit, class id in R (BGR order on disk)
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'dataset_converters', 'synthia.py'),
                    str(tmp_path / 'synthia'), '--no-progress'], check=True, capture_output=True)
    out = np.asarray(Image.open(tmp_path / 'synthia' / 'GT' / 'LABELS' / '0000001_labelTrainIds.png'))
    # the same layout drawn again: its Cityscapes ids, as trainIds (classes SYNTHIA lacks and void become 255)
    ids = make_toy_data.draw_layout(np.random.default_rng([0, 0, 1]), 38, 64)
    to_train = cityscapes_id_to_train_id()
    synthia_classes = set(rehearsal.SYNTHIA_ID_TO_TRAIN_ID.values())
    expected = np.vectorize(lambda i: to_train.get(int(i), 255) if to_train.get(int(i), 255) in synthia_classes
                            else 255)(ids)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    assert len(np.unique(out)) >= 4
    assert (tmp_path / 'synthia' / 'train.txt').read_text().split() == ['0000000', '0000001']


def test_release_layouts_round_trip_through_the_converters():
    sd = {'backbone.conv1.weight': torch.ones(2, 3, 7, 7), 'backbone.bn1.running_mean': torch.zeros(2),
          'backbone.bn1.num_batches_tracked': torch.tensor(0), 'decode_head.conv2d_list.0.weight': torch.ones(19, 8),
          'decode_head.conv2d_list.0.bias': torch.ones(19)}
    init = rehearsal.release_deeplab_init(sd)
    assert set(init) == {'Scale.conv1.weight', 'Scale.bn1.running_mean', 'Scale.layer5.conv2d_list.0.weight',
                         'Scale.layer5.conv2d_list.0.bias'}  # old PyTorch: no num_batches_tracked
    assert init['Scale.layer5.conv2d_list.0.weight'].shape[0] == rehearsal.COCO_CLASSES
    assert rehearsal.release_fcn8s({'backbone.conv1_1.weight': 1, 'decode_head.score_fr.bias': 2}) == {
        'conv1_1.weight': 1, 'score_fr.bias': 2}


def test_overrides_are_roots_and_counts_only():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'bdl_gta5.py'))
    opts = rehearsal.count_options(cfg, '/d/gta5', '/d/cityscapes', 2, 1)
    keys = [o.split('=')[0] for o in opts]
    assert all(k.endswith(('data_root', 'max_iters', 'val_interval', 'max_epochs', 'global_batch_size'))
               for k in keys)
    assert 'train_cfg.stages.ssl_adaptation.train_cfg.max_iters=2' in opts
    fda = Config.fromfile(osp.join(ROOT, 'configs', 'bdl_gta5_fda.py'))  # a baseline trains no F
    assert not any('translation' in o for o in rehearsal.count_options(fda, '/s', '/t', 2, 1))


def test_check_run_reads_the_loops_state_file(tmp_path):
    """The check reads bdl_state.json as the loop writes it (RunState): every planned stage done, the final model
    readable, S' and pseudo labels at their sizes."""
    import json
    stages = {'m0': dict(status='done', seconds=3.25), 'k1/translate': dict(status='done', seconds=1.0),
              'k1/ssl1': dict(status='done', seconds=2.0)}
    state = dict(plan=['m0', 'k1/translate', 'k1/ssl1'], stages=stages, final_model='final_model.pth')
    (tmp_path / 'bdl_state.json').write_text(json.dumps(state))
    torch.save(dict(state_dict={'w': torch.ones(1)}), tmp_path / 'final_model.pth')
    for folder, size in (('k1/translate', (16, 8)), ('k1/ssl1/c', (8, 4)), ('k1/ssl1/_cache/x', (2, 2))):
        (tmp_path / folder).mkdir(parents=True)
        Image.new('L', size).save(tmp_path / folder / 'a.png')
    Image.new('RGB', (90, 35)).save(tmp_path / 'k1/ssl1/threshold_study.png')  # a plot, not an output
    times, sizes = rehearsal.check_run(str(tmp_path))
    assert times == {'m0': 3.2, 'k1/translate': 1.0, 'k1/ssl1': 2.0}
    assert sizes == {'k1/translate': [(16, 8)], 'k1/ssl1': [(8, 4)]}
    (tmp_path / 'ssl_baseline_source').mkdir()  # ledger row 21: B(S), written once per run outside the stages
    Image.new('RGB', (32, 16)).save(tmp_path / 'ssl_baseline_source' / '00001.png')
    assert rehearsal.check_run(str(tmp_path))[1]['ssl_baseline_source'] == [(32, 16)]
    disk = rehearsal.disk_report(str(tmp_path))
    assert disk['ssl_baseline_source']['image']['files'] == 1
    assert disk['k1/ssl1']['image']['files'] == 1 and disk['k1/ssl1']['cache']['files'] == 1
    assert disk['.']['checkpoint']['files'] == 1 and disk['k1/translate']['image']['files'] == 1
    stages['k1/ssl1']['status'] = 'running'
    (tmp_path / 'bdl_state.json').write_text(json.dumps(state))
    try:
        rehearsal.check_run(str(tmp_path))
    except SystemExit as e:
        assert str(e) == 'error: stages not completed: k1/ssl1'
    else:
        raise AssertionError('an unfinished stage passed the check')
