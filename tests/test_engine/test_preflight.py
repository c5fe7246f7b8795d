"""Preflight scan (issue 13, item 1): every data set the plan reads is checked before the first stage; a bad file or
an empty split fails in one line naming it, and nothing has trained."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image
from toy_helpers import ROOT, write_bdl_config

from bdl_mm.engine.preflight import DataCheckError, plan_splits, preflight, scan
from bdl_mm.engine.stage_configs import StageConfigBuilder


@pytest.fixture(scope='module')
def toy_master(toy_root):
    return toy_root  # the session's toy pair, read-only: the tests corrupt a copy


@pytest.fixture(scope='module')
def toy_loop(toy_master, tmp_path_factory):
    """The BidirectionalLoop of configs/bdl_toy.py (built once, nothing run) on a copy of the toy pair that every
    test restores before corrupting it."""
    root = tmp_path_factory.mktemp('preflight_work')
    toy = str(root / 'toy')
    shutil.copytree(toy_master, toy)
    cfg = Config.fromfile(write_bdl_config(root / 'cfg.py', toy))
    cfg.work_dir = str(root / 'work')
    return toy, Runner.from_cfg(cfg).build_train_loop(cfg.train_cfg)


@pytest.fixture
def toy(toy_loop, toy_master):
    """The loop's toy pair, fresh: free to corrupt."""
    path, loop = toy_loop
    shutil.rmtree(path)
    shutil.copytree(toy_master, path)
    return path


@pytest.fixture
def loop(toy_loop, toy, tmp_path):
    """The loop's plan with a stage config builder of a fresh work dir, and no stage done."""
    plan, cfg, work = toy_loop[1].plan, toy_loop[1].outer_cfg, str(tmp_path / 'work')
    return SimpleNamespace(plan=plan, outer_cfg=cfg, configs=StageConfigBuilder(cfg, plan, work), work_dir=work,
                           state={})


def check(loop, mode):
    """The scan the loop runs before its first stage."""
    return preflight(loop.plan, loop.configs, mode, state=loop.state, report_dir=loop.work_dir)


def target_images(toy):
    return sorted(glob.glob(osp.join(toy, 'cityscapes/leftImg8bit/train/*/*.png')))


def first_label(toy, pattern):
    return sorted(glob.glob(osp.join(toy, pattern)))[0]


def test_clean_data_passes_and_reports_its_rate(loop):
    splits = plan_splits(loop.plan, loop.configs, loop.state)
    names = [s.name.split(' (')[0] for s in splits]
    assert names == ['source train', 'target train', 'target val', 'translation source', 'translation target',
                     'translate input']
    for mode in ('header', 'full'):
        report = scan(splits, mode)
        # 6 source images + 6 labels, 4 target train, 2 val images + 2 labels; F and translate read the same files
        assert report['files'] == 20 and report['errors'] == []
        assert report['files_per_s'] > 0 and report['seconds'] >= 0
    report = check(loop, 'header')
    saved = json.load(open(osp.join(loop.work_dir, 'preflight.json')))
    assert saved['files'] == report['files'] == 20 and saved['mode'] == 'header'
    assert check(loop, 'none') is None


def _garbage(path):
    open(path, 'wb').write(b'this is not a png')


def _truncate(path):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def _bad_ids(path):
    lab = np.asarray(Image.open(path)).copy()
    lab[:4, :4] = 33  # a Cityscapes label id, not a trainId
    cv2.imwrite(path, lab)


def _resize(path):
    lab = np.asarray(Image.open(path))
    cv2.imwrite(path, lab[:-2])


def _rgb(path):
    lab = np.asarray(Image.open(path))
    cv2.imwrite(path, np.stack([lab] * 3, -1))


@pytest.mark.parametrize('case, split, message', [
    ('target_image_garbage', 'target train', 'cannot read image {path}'),
    ('target_image_truncated', 'target train', 'cannot read image {path} (ValueError: truncated'),
    ('target_split_empty', 'target train', 'no images in {path}'),
    ('source_label_ids', 'source train', 'label {path} holds ids [33] outside 0..18 and 255'),
    ('val_label_size', 'target val', 'label {path} is 512x254 but image'),
    ('val_label_rgb', 'target val', 'label {path} is a RGB image'),
    ('val_label_missing', 'target val', 'label {path} does not exist'),
    ('source_label_missing', 'source train', 'label {path} of image'),
    ('source_folder_extra', 'translation source', 'cannot read image {path}'),
])
def test_bad_input_is_named_in_one_line(case, split, message, toy, loop):
    if case.startswith('target_image'):
        path = target_images(toy)[1]
        (_garbage if case.endswith('garbage') else _truncate)(path)
    elif case == 'target_split_empty':
        path = osp.join(toy, 'cityscapes/leftImg8bit/train')
        shutil.rmtree(path)
        os.makedirs(path)
    elif case == 'source_label_ids':
        path = first_label(toy, 'gta5/labels/*_labelTrainIds.png')
        _bad_ids(path)
    elif case.startswith('val_label'):
        path = first_label(toy, 'cityscapes/gtFine/val/*/*_labelTrainIds.png')
        {'size': _resize, 'rgb': _rgb, 'missing': os.remove}[case.split('_')[-1]](path)
    elif case == 'source_label_missing':
        path = first_label(toy, 'gta5/labels/*_labelTrainIds.png')
        os.remove(path)
    else:  # an unreadable image in the source folder, not in train.txt: F and the translate stage read it
        path = osp.join(toy, 'gta5/images/99999.png')
        _garbage(path)
    with pytest.raises(DataCheckError) as info:
        check(loop, 'header')
    text = str(info.value)
    assert '\n' not in text and split in text and message.format(path=path) in text, text
    assert not osp.exists(osp.join(loop.work_dir, 'm0'))


def test_full_mode_decodes_what_header_mode_cannot_see(toy, loop):
    path = target_images(toy)[0]
    data = bytearray(open(path, 'rb').read())
    start = data.index(b'IDAT') + 8
    data[start:start + 64] = bytes(64)  # compressed pixels destroyed; header and end chunk intact
    open(path, 'wb').write(bytes(data))
    assert check(loop, 'header')['files'] == 20
    with pytest.raises(DataCheckError, match=f'target train.*cannot decode image {path}'):
        check(loop, 'full')
    assert check(loop, 'none') is None


def test_every_problem_is_counted_and_listed(toy, loop):
    for path in target_images(toy)[:3]:
        _garbage(path)
    with pytest.raises(DataCheckError, match=r'\(and 2 more problem\(s\)\)'):
        check(loop, 'header')
    report = json.load(open(osp.join(loop.work_dir, 'preflight.json')))
    assert len(report['errors']) == 3


def test_translate_input_uses_the_source_dataset_class_default_suffix(toy, loop):
    """A source config without ``img_suffix`` whose dataset class reads ``.jpg``: the translate stage translates the
    JPEGs (``image_folder``: the class's default), so the scan checks them (it looked for ``.png`` and found none)."""
    from mmseg.registry import DATASETS

    from bdl_mm.datasets import GTA5Dataset

    @DATASETS.register_module(name='PreflightJpgSourceDataset', force=True)
    class JpgSource(GTA5Dataset):
        def __init__(self, img_suffix='.jpg', **kwargs):
            super().__init__(img_suffix=img_suffix, **kwargs)

    for path in glob.glob(osp.join(toy, 'gta5/images/*.png')):
        cv2.imwrite(path[:-len('.png')] + '.jpg', cv2.imread(path))
        os.remove(path)
    source = loop.outer_cfg.train_dataloader.dataset.source
    saved = source.to_dict()
    try:
        source.type = 'PreflightJpgSourceDataset'
        source.pop('img_suffix', None)
        splits = plan_splits(loop.plan, loop.configs, loop.state)
        translate_input = [s for s in splits if s.name.startswith('translate input')]
        assert len(translate_input) == 1 and len(translate_input[0].images) == 6
        assert all(p.endswith('.jpg') for p in translate_input[0].images)
        assert check(loop, 'full')['files'] == 20
        # tools/status.py's planned work of the translate stage counts the same 6 images
        assert loop.configs.planned_units(loop.plan.get('k1/translate'))['units'] == 6
    finally:
        loop.outer_cfg.train_dataloader.dataset.source = saved


def _fake_stage_outputs(loop, toy):
    """bdl_state.json of a run killed after k1/ssl1: translated images and pseudo labels on disk."""
    work = loop.work_dir
    translated = osp.join(work, 'k1/translate')
    shutil.copytree(osp.join(toy, 'gta5/images'), translated)
    pseudo = osp.join(work, 'k1/ssl1')
    targets = target_images(toy)
    for img in targets:
        rel = osp.relpath(img, osp.join(toy, 'cityscapes/leftImg8bit/train'))
        os.makedirs(osp.dirname(osp.join(pseudo, rel)), exist_ok=True)
        cv2.imwrite(osp.join(pseudo, rel), np.full((128, 256), 3, np.uint8))
    json.dump(dict(mode='class_median', image_size=[[128, 256]]), open(osp.join(pseudo, 'summary.json'), 'w'))
    loop.state = {'m0': dict(status='done'), 'k1/translation': dict(status='done'),
                  'k1/translate': dict(status='done', translated_dir=translated),
                  'k1/m0': dict(status='done'), 'k1/ssl1': dict(status='done', pseudo_label_dir=pseudo)}
    return translated, pseudo, targets


def test_resume_checks_translated_images_and_pseudo_labels(toy, loop):
    translated, pseudo, targets = _fake_stage_outputs(loop, toy)
    assert check(loop, 'full')['files'] == 20 + 6 + 4
    # translated at F's training width (scale_width): the aspect ratio is kept, fine
    name = sorted(os.listdir(translated))[2]
    img = cv2.imread(osp.join(translated, name))
    cv2.imwrite(osp.join(translated, name), cv2.resize(img, (256, 140)))
    check(loop, 'header')
    # a translated image of another shape than its source image
    cv2.imwrite(osp.join(translated, name), img[:100])
    with pytest.raises(DataCheckError, match=f'translated images \\(k1/translate\\): image {translated}/{name} is '
                                             '320x100 but .*is 320x176'):
        check(loop, 'header')
    # a missing one
    os.remove(osp.join(translated, name))
    with pytest.raises(DataCheckError, match=f'image {translated}/{name} does not exist'):
        check(loop, 'header')
    shutil.copy(osp.join(toy, 'gta5/images', name), osp.join(translated, name))
    # a pseudo label with an id the model cannot predict (full mode decodes every label)
    label = osp.join(pseudo, osp.relpath(targets[1], osp.join(toy, 'cityscapes/leftImg8bit/train')))
    cv2.imwrite(label, np.full((128, 256), 77, np.uint8))
    with pytest.raises(DataCheckError, match=f'pseudo labels \\(k1/ssl1\\): label {label} holds ids \\[77\\]'):
        check(loop, 'full')
    # one at another size than M ran at
    cv2.imwrite(label, np.full((64, 256), 3, np.uint8))
    with pytest.raises(DataCheckError, match=f'label {label} is 256x64, expected 256x128'):
        check(loop, 'header')


def test_train_exits_in_one_line_before_any_training(toy, tmp_path):
    """The issue's case: a corrupt target-train image used to surface only after M(0) had trained."""
    path = target_images(toy)[2]
    _garbage(path)
    config = write_bdl_config(tmp_path / 'cfg.py', toy)
    work = tmp_path / 'work'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir', str(work)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: preflight (header): target train') and f'cannot read image {path}' in last
    assert 'Traceback' not in proc.stderr
    assert not osp.exists(work / 'm0') and not osp.exists(work / 'init_weights.pth')  # nothing trained
    assert not osp.exists(work / 'bdl_config.json')  # a fixed rerun is not refused as a changed config
