"""tools/make_toy_data.py: deterministic, real on-disk formats, several classes, a genuine appearance gap."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
spec = importlib.util.spec_from_file_location('make_toy_data', osp.join(ROOT, 'tools', 'make_toy_data.py'))
toy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy)


def files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_layout_and_formats(tmp_path):
    toy.make_toy_data(str(tmp_path), seed=0, num_source=4, num_target_train=3, num_target_val=2)
    listed = files(tmp_path)
    assert [f for f in listed if f.startswith('gta5/images')] == [f'gta5/images/{i:05d}.png' for i in range(1, 5)]
    assert [f for f in listed if f.startswith('gta5/labels')] == [f'gta5/labels/{i:05d}.png' for i in range(1, 5)]
    assert 'cityscapes/leftImg8bit/train/toyburg/toyburg_000000_000000_leftImg8bit.png' in listed
    assert 'cityscapes/gtFine/train/mockheim/mockheim_000000_000001_gtFine_labelIds.png' in listed
    assert len([f for f in listed if f.startswith('cityscapes/gtFine/val/')]) == 2
    with Image.open(tmp_path / 'gta5/labels/00002.png') as lab:
        assert lab.mode == 'P' and lab.size == (320, 176)  # palette PNG with Cityscapes ids, like GTA5
    with Image.open(tmp_path / 'gta5/labels/00001.png') as lab:
        assert lab.size == (320, 178)  # one label of another size than its image, as in GTA5
    img = cv2.imread(str(tmp_path / 'cityscapes/leftImg8bit/val/valtown/valtown_000000_000000_leftImg8bit.png'))
    assert img.shape == (256, 512, 3)
    ids = set()
    for f in listed:
        if f.endswith('labelIds.png') or f.startswith('gta5/labels'):
            ids |= set(np.unique(np.asarray(Image.open(tmp_path / f))).tolist())
    assert {7, 8, 11, 17, 21, 23, 24, 26} <= ids  # road, sidewalk, building, pole, vegetation, sky, person, car
    assert {0, 1} <= ids  # ids without a trainId


def test_deterministic_under_seed(tmp_path):
    kw = dict(num_source=2, num_target_train=1, num_target_val=1)
    toy.make_toy_data(str(tmp_path / 'a'), seed=1, **kw)
    toy.make_toy_data(str(tmp_path / 'b'), seed=1, **kw)
    toy.make_toy_data(str(tmp_path / 'c'), seed=2, **kw)
    for f in files(tmp_path / 'a'):
        assert (tmp_path / 'a' / f).read_bytes() == (tmp_path / 'b' / f).read_bytes(), f
    assert (tmp_path / 'a/gta5/images/00002.png').read_bytes() != (tmp_path / 'c/gta5/images/00002.png').read_bytes()


def test_appearance_gap_between_domains():
    rng = np.random.default_rng(0)
    lab = toy.draw_layout(rng, 128, 256)
    src = toy.render(lab, 'source', np.random.default_rng(1)).astype(np.float32)
    tgt = toy.render(lab, 'target', np.random.default_rng(1)).astype(np.float32)
    # the same scene looks different: per-class mean colours move, the target is noisier (texture, sensor)
    for cls in (toy.ROAD, toy.BUILDING, toy.CAR):
        assert np.abs(src[lab == cls].mean(0) - tgt[lab == cls].mean(0)).max() > 25
    assert tgt[lab == toy.ROAD].std(0).mean() > 2 * src[lab == toy.ROAD].std(0).mean()


def test_command_line(tmp_path):
    out = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_toy_data.py'), str(tmp_path), '--seed', '3',
                          '--num-source', '2', '--num-target-train', '2', '--num-target-val', '1'],
                         capture_output=True, text=True, check=True).stdout
    assert 'toy data (toy shift) written' in out
    assert len(files(tmp_path / 'gta5')) == 4 and len(files(tmp_path / 'cityscapes')) == 6


def test_gap_script_compares_models_of_the_same_size(tmp_path):
    """tools/toy_domain_gap.py is run by hand (minutes); here: both runs get the same model, which builds and runs."""
    import torch
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    sys.path.insert(0, osp.join(ROOT, 'tools'))
    spec = importlib.util.spec_from_file_location('toy_domain_gap', osp.join(ROOT, 'tools', 'toy_domain_gap.py'))
    gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gap)
    cfgs = [gap.build_cfg(name, dict(type='GTA5Dataset'), str(tmp_path), str(tmp_path), 10, 2, 1e-3, 0)
            for name in ('source_only', 'target_trained')]
    assert cfgs[0].model == cfgs[1].model
    assert cfgs[0].val_evaluator.type == 'UDAIoUMetric' and cfgs[0].train_cfg.max_iters == 10
    init_default_scope('mmseg')
    model = MODELS.build(cfgs[0].model)
    model.eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 128, 256), mode='tensor')
    assert logits.shape == (1, 19, 16, 32)  # output stride 8


def test_shift_families(tmp_path):
    """--shift NAME: the source is the same for every family, the target differs by its family's kind of shift."""
    kw = dict(num_source=2, num_target_train=6, num_target_val=1)
    for shift in toy.SHIFTS:
        toy.make_toy_data(str(tmp_path / shift), seed=0, shift=shift, **kw)
    toy.make_toy_data(str(tmp_path / 'default'), seed=0, **kw)
    for f in files(tmp_path / 'toy'):  # the default is today's shift (data/toy), bitwise
        assert (tmp_path / 'toy' / f).read_bytes() == (tmp_path / 'default' / f).read_bytes(), f
    for shift in toy.SHIFTS:
        for f in files(tmp_path / shift / 'gta5'):
            assert (tmp_path / shift / 'gta5' / f).read_bytes() == (tmp_path / 'toy/gta5' / f).read_bytes()

    def target(shift, kind='leftImg8bit'):
        suffix = '_leftImg8bit.png' if kind == 'leftImg8bit' else '_gtFine_labelIds.png'
        paths = [osp.join(tmp_path, shift, 'cityscapes', f) for f in files(tmp_path / shift / 'cityscapes')
                 if f.startswith(f'{kind}/train') and f.endswith(suffix)]
        read = (lambda p: cv2.imread(p).astype(np.float32)) if kind == 'leftImg8bit' else (
            lambda p: np.asarray(Image.open(p)))
        return [read(p) for p in sorted(paths)]

    # layout: the appearance of the source, the horizon lower in the image (more sky) and more car pixels
    labels = {s: np.stack(target(s, 'gtFine')) for s in ('toy', 'layout', 'colour')}
    assert (labels['layout'] == toy.SKY).mean() > 1.3 * (labels['toy'] == toy.SKY).mean()
    assert (labels['layout'] == toy.CAR).mean() > 2 * (labels['toy'] == toy.CAR).mean()
    np.testing.assert_array_equal(labels['colour'], labels['toy'])  # the other families keep the layout
    # the same scenes rendered: sensor noise and blur, colour shifts, texture raises the spread within a class
    imgs = {s: np.stack(target(s)) for s in toy.SHIFTS}
    lab = labels['toy']

    def class_std(img, cls):
        return float(img[lab == cls].std(axis=0).mean())

    def high_freq(img):  # mean absolute difference of vertical neighbours in the sky (flat in the source)
        d = np.abs(np.diff(img, axis=1)).mean(axis=-1)
        return float(d[(lab[:, 1:] == toy.SKY) & (lab[:, :-1] == toy.SKY)].mean())

    assert high_freq(imgs['sensor']) > 2 * high_freq(imgs['colour'])
    assert class_std(imgs['texture'], toy.BUILDING) > 1.5 * class_std(imgs['colour'], toy.BUILDING)
    mean_colour = {s: imgs[s][lab == toy.ROAD].mean(axis=0) for s in ('colour', 'texture')}
    assert np.abs(mean_colour['colour'] - mean_colour['texture']).max() > 20  # the road is another colour
    # the harder families: the combinations carry both parts; swap trades two pairs of colours; fog veils the far
    assert high_freq(imgs['colour_sensor']) > 2 * high_freq(imgs['colour'])
    assert np.abs(imgs['colour_sensor'][lab == toy.ROAD].mean(axis=0) - mean_colour['texture']).max() > 20
    labels['texture_layout'] = np.stack(target('texture_layout', 'gtFine'))
    np.testing.assert_array_equal(labels['texture_layout'], labels['layout'])
    src = {c: np.asarray(toy.SOURCE_COLOURS[c], np.float32) for c in (toy.SIDEWALK, toy.TERRAIN, toy.ROAD)}
    swap = {c: imgs['swap'][lab == c].mean(axis=0) for c in src}
    texture = {c: imgs['texture'][lab == c].mean(axis=0) for c in src}  # the source's palette, same shading
    for c, other in ((toy.SIDEWALK, toy.TERRAIN), (toy.TERRAIN, toy.SIDEWALK)):
        assert np.abs(swap[c] - texture[other]).max() < np.abs(swap[c] - texture[c]).max()
    assert np.abs(swap[toy.ROAD] - texture[toy.ROAD]).max() < 10  # the other classes keep their colour
    h = lab.shape[1]
    near, far = slice(int(0.8 * h), None), slice(None, int(0.3 * h))
    veil = np.abs(imgs['fog'] - np.asarray(toy.FOG_COLOUR, np.float32)).mean(axis=-1)
    assert veil[:, far].mean() < 0.5 * veil[:, near].mean()  # far pixels are close to the fog's colour


def test_unknown_shift_fails_in_one_line(tmp_path):
    import pytest
    with pytest.raises(ValueError, match=r"^--shift: unknown shift family 'rain'; known: toy, colour, sensor"):
        toy.make_toy_data(str(tmp_path), shift='rain', num_source=1, num_target_train=1, num_target_val=1)
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_toy_data.py'), str(tmp_path), '--shift',
                           'rain'], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'rain'" in proc.stderr
