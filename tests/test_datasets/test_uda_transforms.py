"""LoadPseudoLabel and PackUDAInputs."""
import cv2
import numpy as np
import pytest

from bdl_mm.datasets.transforms import LoadPseudoLabel, PackUDAInputs


def results_with_image(h=6, w=8):
    return dict(img=np.zeros((h, w, 3), np.uint8), img_shape=(h, w), ori_shape=(2 * h, 2 * w), seg_fields=[],
                img_path='x_leftImg8bit.png')


def test_no_path_is_a_noop():
    results = results_with_image()
    out = LoadPseudoLabel()(dict(results))
    assert 'gt_seg_map' not in out and 'pseudo_weight' not in out
    packed = PackUDAInputs()(out)
    assert 'gt_sem_seg' not in packed['data_samples'] and 'pseudo_weight' not in packed['data_samples']


def test_loads_label_and_weight(tmp_path):
    label = np.arange(48, dtype=np.uint8).reshape(6, 8) % 20
    label[label == 19] = 255
    conf = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    cv2.imwrite(str(tmp_path / 'a.png'), label)
    cv2.imwrite(str(tmp_path / 'a_conf.png'), conf)
    results = results_with_image()
    results.update(pseudo_label_path=str(tmp_path / 'a.png'), pseudo_weight_path=str(tmp_path / 'a_conf.png'))
    out = LoadPseudoLabel()(results)
    np.testing.assert_array_equal(out['gt_seg_map'], label)
    np.testing.assert_allclose(out['pseudo_weight'], conf / 255., rtol=0, atol=1e-7)
    assert out['seg_fields'] == ['gt_seg_map', 'pseudo_weight']
    packed = PackUDAInputs()(out)
    sample = packed['data_samples']
    assert sample.gt_sem_seg.data.shape == (1, 6, 8) and sample.gt_sem_seg.data[0, 2, 3].item() == label[2, 3]
    assert sample.pseudo_weight.data.dtype.is_floating_point and sample.pseudo_weight.data.shape == (1, 6, 8)
    assert abs(sample.pseudo_weight.data[0, 5, 7].item() - conf[5, 7] / 255.) < 1e-6
    assert sample.pseudo_label_path == str(tmp_path / 'a.png')


def test_flip_after_loading_moves_the_pseudo_label(tmp_path):
    from mmseg.registry import TRANSFORMS
    label = np.zeros((6, 8), np.uint8)
    label[:, :2] = 7
    cv2.imwrite(str(tmp_path / 'a.png'), label)
    results = results_with_image()
    results['pseudo_label_path'] = str(tmp_path / 'a.png')
    out = TRANSFORMS.build(dict(type='RandomFlip', prob=1.0))(LoadPseudoLabel()(results))
    assert (out['gt_seg_map'][:, -2:] == 7).all() and (out['gt_seg_map'][:, :-2] == 0).all()


def test_size_mismatch_and_unreadable(tmp_path):
    cv2.imwrite(str(tmp_path / 'small.png'), np.zeros((3, 4), np.uint8))
    results = results_with_image()
    results['pseudo_label_path'] = str(tmp_path / 'small.png')
    with pytest.raises(ValueError) as e:
        LoadPseudoLabel()(results)
    msg = str(e.value)
    assert '\n' not in msg and str(tmp_path / 'small.png') in msg and '4x3' in msg and '8x6' in msg
    (tmp_path / 'bad.png').write_bytes(b'garbage')
    results['pseudo_label_path'] = str(tmp_path / 'bad.png')
    with pytest.raises(OSError) as e:
        LoadPseudoLabel()(results)
    assert '\n' not in str(e.value) and str(tmp_path / 'bad.png') in str(e.value)
