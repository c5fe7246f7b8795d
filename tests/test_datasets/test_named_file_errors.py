"""A file corrupted after the preflight scan (issue 13, item 2) fails in one line naming it, in every loader: MMSeg's
(source GTA5, Cityscapes val through the runner hook, also in a dataloader worker), MMagic's (F's training set),
pseudo labelling and translation."""
import glob
import os.path as osp
import shutil
import types

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmseg.registry import DATASETS
from toy_helpers import load_tool

from bdl_mm.datasets.label_maps import LabelFileError


@pytest.fixture
def toy(toy_root, tmp_path):
    return shutil.copytree(toy_root, tmp_path / 'toy')


def corrupt(path, how='garbage'):
    data = open(path, 'rb').read()
    open(path, 'wb').write(b'not an image at all' if how == 'garbage' else data[:len(data) // 2])


def gta5(toy):
    return DATASETS.build(dict(type='GTA5Dataset', data_root=osp.join(toy, 'gta5'), ann_file='train.txt',
                               pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                                         dict(type='PackSegInputs')]))


@pytest.mark.parametrize('how', ['garbage', 'truncated'])
def test_mmseg_source_names_the_changed_image(toy, how):
    dataset = gta5(toy)  # built (and checked) before the file changes
    path = dataset.get_data_info(1)['img_path']
    corrupt(path, how)
    with pytest.raises(LabelFileError) as info:
        dataset[1]
    assert str(info.value).startswith(f'GTA5Dataset: cannot read {path} (') and '\n' not in str(info.value)


def test_mmseg_source_names_the_file_from_a_worker(toy):
    dataset = gta5(toy)
    path = dataset.get_data_info(0)['seg_map_path']
    corrupt(path)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=pseudo_collate)
    with pytest.raises(LabelFileError, match=f'GTA5Dataset: cannot read {path}'):
        next(iter(loader))


def test_mmseg_val_set_names_the_file_through_the_runner_hook(toy):
    from bdl_mm.engine.hooks import DataFileErrorHook
    dataset = DATASETS.build(dict(
        type='CityscapesDataset', data_root=osp.join(toy, 'cityscapes'),
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))
    label = dataset.get_data_info(0)['seg_map_path']
    corrupt(label)
    with pytest.raises(Exception) as plain:  # MMSeg alone: Pillow's error, without the file
        dataset[0]
    assert label not in str(plain.value)
    loop = types.SimpleNamespace(dataloader=types.SimpleNamespace(dataset=dataset))
    DataFileErrorHook().before_run(types.SimpleNamespace(_train_loop=None, _val_loop=loop, _test_loop=None))
    with pytest.raises(LabelFileError, match=f'CityscapesDataset: cannot read {label}'):
        dataset[0]


def test_mmagic_translation_set_names_the_file(toy):
    from mmagic.registry import DATASETS as MMAGIC_DATASETS
    from mmengine.registry import DefaultScope
    keys = ['img_source', 'img_target']
    with DefaultScope.overwrite_default_scope('mmagic'):
        dataset = MMAGIC_DATASETS.build(dict(
            type='UnpairedTranslationDataset', test_mode=True,
            source=dict(data_root=osp.join(toy, 'gta5'), img_dir='images'),
            target=dict(data_root=osp.join(toy, 'cityscapes'), img_dir='leftImg8bit/train',
                        img_suffix='_leftImg8bit.png'),
            pipeline=[dict(type='LoadImageFromFile', key='img_source'),
                      dict(type='LoadImageFromFile', key='img_target'),
                      dict(type='PackInputs', keys=keys, data_keys=keys)]))
    path = dataset.data_infos_b[0]['path']
    corrupt(path)
    with pytest.raises(LabelFileError) as info:
        dataset[0]  # test mode: target 0 with source 0
    assert str(info.value).startswith(f'UnpairedTranslationDataset: cannot read {path}')
    assert 'ndim' not in str(info.value)  # MMagic's own message


def test_pseudo_labelling_names_the_file(toy, tmp_path):
    from bdl_mm.apis import generate_pseudo_labels
    bench = load_tool('benchmark_pseudo_label.py')
    path = sorted(glob.glob(osp.join(toy, 'cityscapes/leftImg8bit/train/*/*.png')))[2]
    corrupt(path)
    with pytest.raises(LabelFileError, match=f'CityscapesDataset: cannot read {path}'):
        generate_pseudo_labels(bench.build_tiny_segmentor(), bench.toy_dataset_cfg(osp.join(toy, 'cityscapes')),
                               str(tmp_path / 'pl'), progress=False)


def test_translation_names_the_file(toy, tmp_path):
    from bdl_mm.apis import translate_dataset
    path = osp.join(toy, 'gta5/images/00003.png')
    corrupt(path, 'truncated')
    with pytest.raises(RuntimeError, match=f'translate: cannot read image {path}'):
        translate_dataset(torch.nn.Conv2d(3, 3, 1), osp.join(toy, 'gta5/images'), str(tmp_path / 'out'),
                          num_workers=0, progress=False)
