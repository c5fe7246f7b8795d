"""UDADataset: both domains per item, independent seeded target order, pseudo-label folder, configs."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader

from bdl_mm.datasets import UDADataset
from bdl_mm.datasets.label_maps import LabelFileError
from bdl_mm.datasets.uda_dataset import copy_counts

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SRC_SIZE, TGT_SIZE = (64, 36), (64, 32)  # (w, h) resized sizes of the small test pipelines


def source_cfg(toy_root, **kwargs):
    return dict(type='GTA5Dataset', data_root=osp.join(toy_root, 'gta5'), ann_file='train.txt',
                pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                          dict(type='Resize', scale=SRC_SIZE, keep_ratio=False), dict(type='PackSegInputs')],
                **kwargs)


def target_cfg(toy_root):
    return dict(type='CityscapesDataset', data_root=osp.join(toy_root, 'cityscapes'),
                data_prefix=dict(img_path='leftImg8bit/train'),
                pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=TGT_SIZE, keep_ratio=False),
                          dict(type='LoadPseudoLabel'), dict(type='PackUDAInputs')])


def target_names(ds, indices):
    return [osp.basename(ds[i]['target']['data_samples'].img_path) for i in indices]


def test_yields_both_domains(toy_root):
    ds = UDADataset(source_cfg(toy_root), target_cfg(toy_root), seed=0)
    assert len(ds) == 6 and len(ds.target) == 4
    item = ds[2]
    src, tgt = item['source'], item['target']
    assert src['inputs'].shape == (3, 36, 64) and tgt['inputs'].shape == (3, 32, 64)
    assert src['data_samples'].img_path.endswith('gta5/images/00003.png')
    assert src['data_samples'].gt_sem_seg.data.shape == (1, 36, 64)
    assert 'leftImg8bit/train' in tgt['data_samples'].img_path
    assert 'gt_sem_seg' not in tgt['data_samples']  # no pseudo labels: the target has no label
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=pseudo_collate)))
    assert set(batch) == {'source', 'target'}
    assert len(batch['source']['inputs']) == 2 and len(batch['target']['data_samples']) == 2
    assert ds.metainfo['classes'][13] == 'car'


def test_target_order_is_independent_and_seeded(toy_root):
    forward = target_names(UDADataset(source_cfg(toy_root), target_cfg(toy_root), seed=3), range(6))
    backward = target_names(UDADataset(source_cfg(toy_root), target_cfg(toy_root), seed=3), reversed(range(6)))
    # the target sequence does not depend on which source indices are drawn
    assert forward == backward
    # each run of len(target) draws visits every target image once
    assert sorted(forward[:4]) == sorted(set(forward[:4])) and len(set(forward[:4])) == 4
    assert target_names(UDADataset(source_cfg(toy_root), target_cfg(toy_root), seed=4), range(6)) != forward


def test_target_streams_differ_per_worker(toy_root, monkeypatch):
    ds = UDADataset(source_cfg(toy_root), target_cfg(toy_root), seed=0, lazy_init=True)
    ds.full_init()
    streams = []
    for worker in (0, 1):
        info = type('Info', (), {'id': worker})()
        monkeypatch.setattr(torch.utils.data, 'get_worker_info', lambda info=info: info)
        streams.append([ds.target_index() for _ in range(8)])
    assert streams[0] != streams[1]
    assert sorted(streams[0][:4]) == [0, 1, 2, 3] and sorted(streams[1][4:]) == [0, 1, 2, 3]


def write_pseudo_labels(toy_root, out, with_conf=False):
    img_dir = osp.join(toy_root, 'cityscapes', 'leftImg8bit', 'train')
    written = {}
    for i, (dirpath, _, files) in enumerate(sorted(os.walk(img_dir))):
        for j, f in enumerate(sorted(files)):
            rel = osp.relpath(osp.join(dirpath, f), img_dir)
            label = np.full((TGT_SIZE[1], TGT_SIZE[0]), 255, np.uint8)
            label[:, : 10 + 5 * j] = 13 if i % 2 else 0  # some pixels labelled, the rest ignored
            os.makedirs(osp.dirname(osp.join(out, rel)), exist_ok=True)
            cv2.imwrite(osp.join(out, rel), label)
            if with_conf:
                cv2.imwrite(osp.join(out, rel[:-4] + '_conf.png'), np.full_like(label, 204))
            written[osp.basename(rel)] = label
    return written


def test_pseudo_label_folder_is_honoured(toy_root, tmp_path):
    written = write_pseudo_labels(toy_root, str(tmp_path / 'pl'), with_conf=True)
    ds = UDADataset(source_cfg(toy_root), target_cfg(toy_root), pseudo_label_dir=str(tmp_path / 'pl'), seed=0)
    for i in range(4):
        tgt = ds[i]['target']['data_samples']
        expected = written[osp.basename(tgt.img_path)]
        np.testing.assert_array_equal(tgt.gt_sem_seg.data[0].numpy(), expected)
        assert (tgt.gt_sem_seg.data == 255).sum() > 0
        np.testing.assert_allclose(tgt.pseudo_weight.data.numpy(), 0.8, atol=1e-6)
        assert tgt.pseudo_label_path.startswith(str(tmp_path / 'pl'))
    # switching the folder off: no label on the target again
    ds.set_pseudo_label_dir(None)
    assert 'gt_sem_seg' not in ds[0]['target']['data_samples']


def test_pseudo_label_errors(toy_root, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        UDADataset(source_cfg(toy_root), target_cfg(toy_root), pseudo_label_dir=str(tmp_path / 'none'))
    assert str(tmp_path / 'none') in str(e.value) and '\n' not in str(e.value)
    write_pseudo_labels(toy_root, str(tmp_path / 'pl'))
    victim = sorted(os.listdir(tmp_path / 'pl' / 'mockheim'))[0]
    os.remove(tmp_path / 'pl' / 'mockheim' / victim)
    with pytest.raises(FileNotFoundError) as e:
        UDADataset(source_cfg(toy_root), target_cfg(toy_root), pseudo_label_dir=str(tmp_path / 'pl'))
    assert str(tmp_path / 'pl' / 'mockheim' / victim) in str(e.value) and '\n' not in str(e.value)


def test_unreadable_source_label_names_the_file(toy_root, tmp_path):
    import shutil
    root = tmp_path / 'toy'
    shutil.copytree(toy_root, root)
    label = root / 'gta5' / 'labels' / '00002_labelTrainIds.png'
    label.write_bytes(b'\x89PNG garbage')
    ds = UDADataset(source_cfg(str(root)), target_cfg(str(root)), seed=0)
    with pytest.raises(LabelFileError) as e:
        ds[1]
    assert str(label) in str(e.value) and '\n' not in str(e.value)


def test_translated_source_keeps_labels(toy_root, tmp_path):
    translated = tmp_path / 'translated'
    os.makedirs(translated)
    for name in sorted(os.listdir(osp.join(toy_root, 'gta5', 'images'))):
        img = cv2.imread(osp.join(toy_root, 'gta5', 'images', name))
        cv2.imwrite(str(translated / name), 255 - img)
    cfg = source_cfg(toy_root, data_prefix=dict(img_path=str(translated), seg_map_path='labels'))
    ds = UDADataset(cfg, target_cfg(toy_root), seed=0)
    src = ds[0]['source']['data_samples']
    assert src.img_path == str(translated / '00001.png')
    assert src.seg_map_path == osp.join(toy_root, 'gta5', 'labels', '00001_labelTrainIds.png')


def test_untranslated_source_is_a_second_copy_with_the_same_labels(toy_root, tmp_path):
    translated = tmp_path / 'translated'
    os.makedirs(translated)
    names = sorted(os.listdir(osp.join(toy_root, 'gta5', 'images')))
    for name in names:
        cv2.imwrite(str(translated / name), 255 - cv2.imread(osp.join(toy_root, 'gta5', 'images', name)))
    cfg = source_cfg(toy_root, data_prefix=dict(img_path=str(translated), seg_map_path='labels'))
    ds = UDADataset(cfg, target_cfg(toy_root), untranslated_source=source_cfg(toy_root), seed=0)
    assert len(ds) == 2 * len(names) == 12
    first, second = ds[1]['source'], ds[1 + len(names)]['source']
    assert first['data_samples'].img_path == str(translated / names[1])
    assert second['data_samples'].img_path == osp.join(toy_root, 'gta5', 'images', names[1])
    # the same labels, the images inverted (255 - x): the two copies sum to 255 (+-1, the resize rounds)
    assert torch.equal(first['data_samples'].gt_sem_seg.data, second['data_samples'].gt_sem_seg.data)
    assert torch.all((first['inputs'].int() + second['inputs'].int() - 255).abs() <= 1)
    # the copies must list the same images
    with pytest.raises(ValueError, match='untranslated_source'):
        UDADataset(cfg, target_cfg(toy_root), untranslated_source=source_cfg(toy_root, indices=5), seed=0)


@pytest.mark.parametrize('share, counts', [(0.5, (1, 1)), (1, (0, 1)), (2 / 3, (1, 2)), (0.25, (3, 1)), (0.9, (1, 9))])
def test_copy_counts_list_each_copy_so_the_second_is_drawn_with_the_share(share, counts):
    assert copy_counts(share) == counts
    assert counts[1] / sum(counts) == pytest.approx(share)


@pytest.mark.parametrize('share, message', [(0, r'in \(0, 1\]'), (1.5, r'in \(0, 1\]'), (True, 'number'),
                                            ('1', 'number'), (0.33, r'denominator of at most 10.*nearest 1/3')])
def test_copy_counts_refuse_a_share_they_cannot_list(share, message):
    with pytest.raises(ValueError, match=message):
        copy_counts(share, 'train_cfg.ssl_second_source_share')


def test_untranslated_share_lists_the_second_copy_that_often(toy_root, tmp_path):
    """``untranslated_share``: 1 reads the second copy alone; 2/3 lists S' once and the copy twice (n = 6)."""
    translated = tmp_path / 'translated'
    os.makedirs(translated)
    names = sorted(os.listdir(osp.join(toy_root, 'gta5', 'images')))
    for name in names:
        cv2.imwrite(str(translated / name), cv2.imread(osp.join(toy_root, 'gta5', 'images', name)))
    cfg = source_cfg(toy_root, data_prefix=dict(img_path=str(translated), seg_map_path='labels'))
    original = osp.join(toy_root, 'gta5', 'images')

    def folders(ds):
        return [osp.dirname(ds[i]['source']['data_samples'].img_path) for i in range(len(ds))]

    alone = UDADataset(cfg, target_cfg(toy_root), untranslated_source=source_cfg(toy_root), untranslated_share=1,
                       seed=0)
    assert len(alone) == 6 and folders(alone) == [original] * 6
    assert [osp.basename(alone[i]['source']['data_samples'].img_path) for i in range(6)] == names
    two_thirds = UDADataset(cfg, target_cfg(toy_root), untranslated_source=source_cfg(toy_root),
                            untranslated_share=2 / 3, seed=0)
    assert len(two_thirds) == 18 and folders(two_thirds) == [str(translated)] * 6 + [original] * 12
    half = UDADataset(cfg, target_cfg(toy_root), untranslated_source=source_cfg(toy_root), seed=0)
    assert folders(half) == [str(translated)] * 6 + [original] * 6  # the default: each copy once, as before
    with pytest.raises(ValueError, match='untranslated_share must be a number in'):
        UDADataset(cfg, target_cfg(toy_root), untranslated_source=source_cfg(toy_root), untranslated_share=0)


@pytest.mark.parametrize('source', ['gta5', 'synthia'])
def test_uda_configs(source):
    cfg = Config.fromfile(osp.join(ROOT, f'configs/_base_/datasets/uda_{source}_cityscapes.py'))
    scale = {'gta5': (1280, 720), 'synthia': (1280, 760)}[source]
    assert cfg.source_scale == scale and cfg.img_scale == (1024, 512)
    loader = cfg.train_dataloader
    assert loader.batch_size == 1 and loader.sampler == dict(type='InfiniteSampler', shuffle=True)
    ds = loader.dataset
    assert ds.type == 'UDADataset' and ds.pseudo_label_dir is None and set(ds) == {'type', 'source', 'target',
                                                                                  'pseudo_label_dir'}
    assert ds.source.type == {'gta5': 'GTA5Dataset', 'synthia': 'SynthiaDataset'}[source]
    assert [t['type'] for t in ds.source.pipeline] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize',
                                                       'PackSegInputs']
    # release resizing: PIL bicubic (labels nearest)
    assert ds.source.pipeline[2] == dict(type='Resize', scale=scale, keep_ratio=False, backend='pillow',
                                         interpolation='bicubic')
    assert [t['type'] for t in ds.target.pipeline] == ['LoadImageFromFile', 'Resize', 'LoadPseudoLabel',
                                                       'PackUDAInputs']
    assert ds.target.pipeline[1].scale == (1024, 512) and 'seg_map_path' not in ds.target.data_prefix
    val = cfg.val_dataloader.dataset
    assert val.type == 'CityscapesDataset' and val.data_prefix.img_path == 'leftImg8bit/val'
    assert [t['type'] for t in val.pipeline] == ['LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackSegInputs']
    assert cfg.val_evaluator.type == 'UDAIoUMetric' and cfg.test_evaluator.type == 'UDAIoUMetric'
    # source-only base: the plain source dataset
    base = Config.fromfile(osp.join(ROOT, f'configs/_base_/datasets/{source}.py'))
    assert base.train_dataloader.dataset.type == ds.source.type
    assert 'data_prefix' in base.train_dataloader.dataset and base.train_dataloader.dataset.ann_file == 'train.txt'


def test_config_pipelines_on_toy_data(toy_root):
    """The release pipelines of the configs run on the toy files: fixed sizes, full-size evaluation labels."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/uda_gta5_cityscapes.py'))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.source.data_root = osp.join(toy_root, 'gta5')
    ds_cfg.target.data_root = osp.join(toy_root, 'cityscapes')
    ds_cfg.seed = 0
    item = DATASETS.build(ds_cfg)[0]
    assert item['source']['inputs'].shape == (3, 720, 1280)
    assert item['source']['data_samples'].gt_sem_seg.data.shape == (1, 720, 1280)
    assert item['target']['inputs'].shape == (3, 512, 1024)
    val_cfg = cfg.val_dataloader.dataset
    val_cfg.data_root = osp.join(toy_root, 'cityscapes')
    val = DATASETS.build(val_cfg)[0]
    assert val['inputs'].shape == (3, 512, 1024)
    assert val['data_samples'].gt_sem_seg.data.shape == (1, 256, 512)  # the label keeps its original size
    assert val['data_samples'].ori_shape == (256, 512)
