"""The prealign switch (``train_cfg.stages.translation.prealign``, ledger row 20, screened for the robust recipe and
not chosen): the translation stage fits a baseline on the target images and writes the source through it, F is
trained on that source and the translate stage gives S' = F(baseline(S)). Bad settings fail before any stage, naming
the key."""
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from toy_helpers import ROOT, load_tool, reinhard_by_hand, write_bdl_config

from bdl_mm.apis import load_translator, translate_dataset
from bdl_mm.models.translators.translation_baseline import read_image

TRAIN = osp.join(ROOT, 'tools', 'train.py')
PREALIGN = "train_cfg['stages']['translation'].update(prealign=dict(type='Reinhard'))"


def test_prealigned_source_is_what_f_learns_from_and_translates(toy_root, tmp_path, monkeypatch):
    """K = 1 without SSL: the stage's prealigned images are Reinhard's colour transfer of each source image to the
    target set's statistics (computed here by hand from the target images), F's dumped config reads them, and S'
    is F applied to them, not to S."""
    config = write_bdl_config(tmp_path / 'cfg.py', toy_root, loop_options='use_ssl=False,', extra=PREALIGN)
    work = tmp_path / 'work'
    proc = subprocess.run([sys.executable, TRAIN, config, '--work-dir', str(work)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(osp.join(work, 'bdl_state.json')) as f:
        state = json.load(f)
    assert list(state['stages']) == ['m0', 'k1/translation', 'k1/translate', 'k1/m0']
    f_stage = state['stages']['k1/translation']
    pre_dir = osp.join(work, 'k1/translation', 'prealigned_source')
    assert f_stage['source_dir'] == osp.abspath(pre_dir) and f_stage['prealign_counts']['written'] == 6
    src_dir, tgt_dir = osp.join(toy_root, 'gta5/images'), osp.join(toy_root, 'cityscapes/leftImg8bit/train')
    names = sorted(os.listdir(src_dir))
    assert sorted(os.listdir(pre_dir)) == names
    # Reinhard by hand: the target set's l-alpha-beta mean and sd over all its pixels, each source image moved to them
    targets = sorted(osp.join(d, n) for d, _, fs in os.walk(tgt_dir) for n in fs if n.endswith('.png'))
    for name in names:
        want = reinhard_by_hand(osp.join(src_dir, name), targets)
        got = read_image(osp.join(pre_dir, name)).astype(np.float64)
        assert np.abs(got - np.round(want)).max() <= 1  # rounding only
        assert np.abs(got - read_image(osp.join(src_dir, name))).mean() > 5  # the colours did move
    with open(f_stage['prealign']) as f:
        record = json.load(f)
    assert record['type'] == 'ReinhardColourTransfer' and record['num_target_images'] == len(targets)
    # F was trained on the prealigned folder (its dumped config) and S' = F(prealigned S), not F(S)
    f_cfg = Config.fromfile(f_stage['config'])
    assert f_cfg.train_dataloader.dataset.source.data_root == osp.join(str(work), 'k1/translation',
                                                                          'prealigned_source')
    translator = load_translator(f_stage['config'], f_stage['checkpoint'])
    from bdl_mm.apis.translate import training_width
    width = training_width(f_stage['config'])
    # by hand, as docs/user_guides/train_test.md says: tools/translate.py with prealign.json, then F on its output
    monkeypatch.syspath_prepend(osp.join(ROOT, 'tools'))  # tools/_bootstrap.py, as the script runs
    assert load_tool('translate.py').main([f_stage['prealign'], '--src', src_dir, '--out', str(tmp_path / 'pre'),
                                '--num-workers', '0', '--no-progress']) == 0
    for name in names:
        assert np.array_equal(read_image(str(tmp_path / 'pre' / name)), read_image(osp.join(pre_dir, name)))
    translate_dataset(translator, str(tmp_path / 'pre'), str(tmp_path / 'f_pre'), scale_width=width, progress=False)
    translate_dataset(translator, src_dir, str(tmp_path / 'f_src'), scale_width=width, progress=False)
    s_prime = state['stages']['k1/translate']['translated_dir']

    def mean_diff(folder):  # mean absolute difference to S' over all images (grey levels)
        return np.mean([np.abs(read_image(osp.join(s_prime, n)).astype(float) - read_image(str(folder / n))).mean()
                        for n in names])
    # equal up to the last grey level (the run's translate and this one may use other thread counts), far from F(S)
    assert mean_diff(tmp_path / 'f_pre') < 0.5 < 2 < mean_diff(tmp_path / 'f_src')


@pytest.mark.parametrize('line, message', [
    ("train_cfg['stages']['translation'].update(prealign=dict(type='Nothing'))",
     r'train_cfg\.stages\.translation\.prealign: expected dict\(type=.*Reinhard'),
    ("train_cfg['stages']['translation'].update(prealign='Reinhard')", r'train_cfg\.stages\.translation\.prealign'),
    ("train_cfg['stages']['translation'].update(type='FDA', prealign=dict(type='Reinhard'))",
     r'train_cfg\.stages\.translation\.prealign: F is not trained here'),
])
def test_bad_prealign_fails_before_any_stage(line, message, toy_root, tmp_path):
    cfg = Config.fromfile(write_bdl_config(tmp_path / 'cfg.py', toy_root, extra=line))
    cfg.work_dir = str(tmp_path / 'work')
    with pytest.raises(ValueError, match=message):
        Runner.from_cfg(cfg).train()
    assert not osp.exists(osp.join(tmp_path, 'work', 'm0'))

