"""GTA5Dataset / SynthiaDataset: aligned image/label pairs from converted files, and one-line errors on bad input."""
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
from mmseg.datasets import CityscapesDataset
from toy_helpers import load_tool

from bdl_mm.datasets import GTA5Dataset, SynthiaDataset
from bdl_mm.datasets.label_maps import LabelFileError

TOY = load_tool('make_toy_data.py')
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')]


def one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert '\n' not in msg, msg
    for needle in needles:
        assert str(needle) in msg, msg
    return msg


def test_gta5_pairs_are_aligned(toy_root):
    ds = GTA5Dataset(data_root=osp.join(toy_root, 'gta5'), ann_file='train.txt', pipeline=PIPELINE)
    assert len(ds) == 6
    assert ds.metainfo['classes'] == CityscapesDataset.METAINFO['classes']
    road_colour = np.array(TOY.PALETTE['source'][TOY.ROAD], np.float32)
    car_colour = np.array(TOY.PALETTE['source'][TOY.CAR], np.float32)
    for i in range(len(ds)):
        data = ds[i]
        assert osp.basename(data['seg_map_path']) == osp.basename(data['img_path'])[:-4] + '_labelTrainIds.png'
        img, seg = data['img'], data['gt_seg_map']
        assert img.shape[:2] == seg.shape == (176, 320)
        assert set(np.unique(seg)) <= set(range(19)) | {255}
        # the pixels labelled road (trainId 0) / car (13) have the source road / car colour
        assert np.abs(img[seg == 0].mean(0) - road_colour).max() < 20
        if (seg == 13).sum() > 50:
            assert np.abs(img[seg == 13].mean(0) - car_colour).max() < 25


def test_gta5_without_split_file_scans_images(toy_root):
    ds = GTA5Dataset(data_root=osp.join(toy_root, 'gta5'), pipeline=PIPELINE)
    names = [osp.basename(ds.get_data_info(i)['img_path']) for i in range(len(ds))]
    assert names == [f'{i:05d}.png' for i in range(1, 7)]


def copy_gta5(toy_root, tmp_path):
    dst = tmp_path / 'gta5'
    shutil.copytree(osp.join(toy_root, 'gta5'), dst)
    return str(dst)


def test_missing_root_split_and_label(toy_root, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        GTA5Dataset(data_root=str(tmp_path / 'nowhere'), ann_file='train.txt')
    one_line(e, tmp_path / 'nowhere', 'data root')
    root = copy_gta5(toy_root, tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        GTA5Dataset(data_root=root, ann_file='val.txt')
    one_line(e, osp.join(root, 'val.txt'), 'split file')
    os.remove(osp.join(root, 'labels', '00003_labelTrainIds.png'))
    with pytest.raises(FileNotFoundError) as e:
        GTA5Dataset(data_root=root, ann_file='train.txt')
    one_line(e, osp.join(root, 'labels', '00003_labelTrainIds.png'), osp.join(root, 'images', '00003.png'),
             'dataset_converters/gta5.py')


def test_verify_files_unreadable_and_size_mismatch(toy_root, tmp_path):
    root = copy_gta5(toy_root, tmp_path)
    GTA5Dataset(data_root=root, ann_file='train.txt', verify_files=True)  # the converted toy data is fine
    label = osp.join(root, 'labels', '00004_labelTrainIds.png')
    cv2.imwrite(label, np.zeros((10, 10), np.uint8))
    with pytest.raises(LabelFileError) as e:
        GTA5Dataset(data_root=root, ann_file='train.txt', verify_files=True)
    one_line(e, label, '10x10', '320x176')
    with open(label, 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(LabelFileError) as e:
        GTA5Dataset(data_root=root, ann_file='train.txt', verify_files=True)
    one_line(e, label, 'cannot read')


def test_synthia_layout(tmp_path):
    root = tmp_path / 'synthia'
    (root / 'RGB').mkdir(parents=True)
    (root / 'GT' / 'LABELS').mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ('0000000', '0000001'):
        lab = rng.integers(0, 19, (8, 12)).astype(np.uint8)
        cv2.imwrite(str(root / 'RGB' / f'{name}.png'), np.repeat(lab[..., None] * 10, 3, axis=2))
        cv2.imwrite(str(root / 'GT' / 'LABELS' / f'{name}_labelTrainIds.png'), lab)
    (root / 'train.txt').write_text('0000000\n0000001\n')
    ds = SynthiaDataset(data_root=str(root), ann_file='train.txt', pipeline=PIPELINE)
    assert len(ds) == 2
    for i in range(2):
        data = ds[i]
        np.testing.assert_array_equal(data['img'][..., 0], data['gt_seg_map'] * 10)
    os.remove(root / 'GT' / 'LABELS' / '0000001_labelTrainIds.png')
    with pytest.raises(FileNotFoundError) as e:
        SynthiaDataset(data_root=str(root), ann_file='train.txt')
    one_line(e, '0000001_labelTrainIds.png', 'dataset_converters/synthia.py')
