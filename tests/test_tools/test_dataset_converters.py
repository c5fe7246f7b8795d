"""tools/dataset_converters/{gta5,synthia,cityscapes}.py on generated files: exact trainIds and bad input."""
import importlib.util
import os
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# REFERENCE.md, written out independently of the code under test
GTA5_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
                 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
SYNTHIA_TO_TRAIN = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13, 18: 14,
                    19: 15, 20: 16, 12: 17, 11: 18}


def run(tool, *argv):
    spec = importlib.util.spec_from_file_location(f'conv_{tool}', osp.join(ROOT, 'tools', 'dataset_converters',
                                                                           f'{tool}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old, sys.argv = sys.argv, [tool, *map(str, argv)]
    try:
        module.main()
    finally:
        sys.argv = old


def expected(ids, table):
    return np.vectorize(lambda i: table.get(int(i), 255))(ids).astype(np.uint8)


def write_gta5_pair(root, name, ids, img_size=None):
    os.makedirs(root / 'images', exist_ok=True)
    os.makedirs(root / 'labels', exist_ok=True)
    h, w = img_size or ids.shape
    cv2.imwrite(str(root / 'images' / f'{name}.png'), np.full((h, w, 3), 100, np.uint8))
    lab = Image.fromarray(ids.astype(np.uint8), mode='P')  # GTA5 labels are palette PNGs
    lab.putpalette(list(np.random.default_rng(0).integers(0, 255, 768).astype(np.uint8)))
    lab.save(root / 'labels' / f'{name}.png')


def all_ids(h=16, w=16):
    return np.arange(256, dtype=np.uint8).reshape(h, w)


def test_gta5_every_id(tmp_path):
    root = tmp_path / 'gta5'
    write_gta5_pair(root, '00001', all_ids())
    write_gta5_pair(root, '00002', all_ids()[::-1])
    run('gta5', root)
    for name, ids in (('00001', all_ids()), ('00002', all_ids()[::-1])):
        out = np.asarray(Image.open(root / 'labels' / f'{name}_labelTrainIds.png'))
        np.testing.assert_array_equal(out, expected(ids, GTA5_TO_TRAIN))
    assert (root / 'train.txt').read_text().split() == ['00001', '00002']
    assert not (root / 'size_mismatch.txt').exists()


def test_gta5_resume_and_overwrite(tmp_path):
    root = tmp_path / 'gta5'
    write_gta5_pair(root, '00001', all_ids())
    run('gta5', root)
    out = root / 'labels' / '00001_labelTrainIds.png'
    cv2.imwrite(str(out), np.zeros((16, 16), np.uint8))  # a resumed run keeps existing outputs
    run('gta5', root)
    assert np.asarray(Image.open(out)).max() == 0
    run('gta5', root, '--overwrite')
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected(all_ids(), GTA5_TO_TRAIN))


def test_gta5_shards_cover_everything(tmp_path):
    root = tmp_path / 'gta5'
    for i in range(5):
        write_gta5_pair(root, f'{i:05d}', all_ids())
    run('gta5', root, '--num-shards', 2, '--shard-id', 0)
    done0 = sorted(f for f in os.listdir(root / 'labels') if 'TrainIds' in f)
    assert done0 == ['00000_labelTrainIds.png', '00002_labelTrainIds.png', '00004_labelTrainIds.png']
    assert not (root / 'train.txt').exists()
    run('gta5', root, '--num-shards', 2, '--shard-id', 1)
    assert len([f for f in os.listdir(root / 'labels') if 'TrainIds' in f]) == 5


@pytest.mark.parametrize('policy', ['resize', 'drop', 'error'])
def test_gta5_size_mismatch_policies(tmp_path, capsys, policy):
    root = tmp_path / 'gta5'
    write_gta5_pair(root, '00001', all_ids())
    ids = np.full((8, 12), 26, np.uint8)
    ids[:, :6] = 7
    write_gta5_pair(root, '00002', ids, img_size=(16, 24))
    if policy == 'error':
        with pytest.raises(SystemExit) as e:
            run('gta5', root, '--size-mismatch', policy)
        msg = str(e.value)
        assert '\n' not in msg and str(root / 'labels' / '00002.png') in msg and '12x8' in msg and '24x16' in msg
        return
    run('gta5', root, '--size-mismatch', policy)
    assert (root / 'size_mismatch.txt').read_text().split() == ['00002']
    assert '00002' in capsys.readouterr().out
    split = (root / 'train.txt').read_text().split()
    out = root / 'labels' / '00002_labelTrainIds.png'
    if policy == 'drop':
        assert split == ['00001'] and not out.exists()
    else:
        assert split == ['00001', '00002']
        lab = np.asarray(Image.open(out))
        assert lab.shape == (16, 24) and (lab[:, :12] == 0).all() and (lab[:, 12:] == 13).all()


def test_gta5_bad_input(tmp_path):
    with pytest.raises(SystemExit) as e:
        run('gta5', tmp_path / 'missing')
    assert str(tmp_path / 'missing') in str(e.value) and '\n' not in str(e.value)
    root = tmp_path / 'gta5'
    write_gta5_pair(root, '00001', all_ids())
    write_gta5_pair(root, '00002', all_ids())
    os.remove(root / 'labels' / '00002.png')  # an image without its label
    with pytest.raises(SystemExit) as e:
        run('gta5', root)
    assert str(root / 'labels' / '00002.png') in str(e.value) and '\n' not in str(e.value)
    write_gta5_pair(root, '00002', all_ids())
    (root / 'labels' / '00001.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')  # an unreadable PNG
    with pytest.raises(SystemExit) as e:
        run('gta5', root)
    assert str(root / 'labels' / '00001.png') in str(e.value) and '\n' not in str(e.value)


def test_synthia_every_id_16bit_first_channel(tmp_path):
    root = tmp_path / 'synthia'
    os.makedirs(root / 'RGB')
    os.makedirs(root / 'GT' / 'LABELS')
    cls = np.concatenate([np.arange(40), [255, 256, 1000, 65535]]).astype(np.uint16).reshape(4, 11)
    inst = (np.arange(44, dtype=np.uint16).reshape(4, 11) * 7 + 3)  # instance ids in the second channel
    rgb = np.stack([cls, inst, np.zeros_like(cls)], axis=-1)  # R = class id, G = instance id
    cv2.imwrite(str(root / 'GT' / 'LABELS' / '0000000.png'), rgb[..., ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(root / 'RGB' / '0000000.png'), np.zeros((4, 11, 3), np.uint8))
    run('synthia', root)
    out = np.asarray(Image.open(root / 'GT' / 'LABELS' / '0000000_labelTrainIds.png'))
    np.testing.assert_array_equal(out, expected(cls, SYNTHIA_TO_TRAIN))
    assert (root / 'train.txt').read_text().split() == ['0000000']


def test_cityscapes_label_ids_to_train_ids(tmp_path):
    root = tmp_path / 'cityscapes'
    for split, city in (('train', 'aachen'), ('val', 'lindau')):
        os.makedirs(root / 'gtFine' / split / city)
        os.makedirs(root / 'leftImg8bit' / split / city)
        stem = f'{city}_000000_000019'
        Image.fromarray(all_ids()).save(root / 'gtFine' / split / city / f'{stem}_gtFine_labelIds.png')
        cv2.imwrite(str(root / 'leftImg8bit' / split / city / f'{stem}_leftImg8bit.png'),
                    np.zeros((16, 16, 3), np.uint8))
    run('cityscapes', root)
    out = np.asarray(Image.open(root / 'gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png'))
    np.testing.assert_array_equal(out, expected(all_ids(), GTA5_TO_TRAIN))
    assert (root / 'train.txt').read_text().split() == ['aachen/aachen_000000_000019']
    assert (root / 'val.txt').read_text().split() == ['lindau/lindau_000000_000019']
    os.remove(root / 'leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png')
    with pytest.raises(SystemExit) as e:
        run('cityscapes', root)
    assert 'lindau_000000_000019_leftImg8bit.png' in str(e.value) and '\n' not in str(e.value)
