"""Per-stage diagnostics (bdl_mm.evaluation.stage_diagnostics): hand-computed image statistics, consistency of a
segmentor on S and S', pseudo-label kept ratios and precision against target labels."""
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData

from bdl_mm.evaluation.stage_diagnostics import (
    edge_consistency,
    image_statistics,
    label_free_flags,
    miou,
    pseudo_label_diagnostics,
    statistics_distance,
    subset,
    translation_consistency,
)


def test_subset_is_evenly_spaced_and_deterministic():
    assert subset(range(10), 4) == [0, 2, 5, 7]
    assert subset([3, 1, 2], None) == [1, 2, 3] and subset([3, 1, 2], 5) == [1, 2, 3] and subset([1], 0) == []


def test_edge_consistency_by_hand(tmp_path):
    rng = np.random.default_rng(0)
    img = np.zeros((32, 48, 3), np.uint8)
    img[8:24, 10:20] = (200, 100, 40)  # a box and a thin pole on a flat background
    img[:, 30:32] = (20, 220, 120)
    img = (img // 2 * 2).astype(np.uint8)  # even values: halving them is exact

    def write(name, array):
        path = str(tmp_path / name)
        cv2.imwrite(path, array)
        return path

    src = write('src.png', img)
    assert edge_consistency([src], [src]) == pytest.approx(1.0)
    assert edge_consistency([src], [write('shifted.png', img + 10)]) == pytest.approx(1.0)  # colour moved, edges kept
    assert edge_consistency([src], [write('half.png', img // 2)]) == pytest.approx(1.0, abs=1e-5)  # contrast halved
    blur3 = edge_consistency([src], [write('b3.png', cv2.GaussianBlur(img, (0, 0), 1.0))])
    blur9 = edge_consistency([src], [write('b9.png', cv2.GaussianBlur(img, (0, 0), 3.0))])
    assert 1.0 > blur3 > blur9 > 0
    assert edge_consistency([src], [write('flat.png', np.full_like(img, 90))]) == 0.0
    noise = write('noise.png', rng.integers(0, 256, img.shape, dtype=np.uint8))
    assert abs(edge_consistency([src], [noise])) < 0.2
    # a translation at another size is compared at its own size; the mean is over the pairs
    small = write('small.png', cv2.resize(img, (24, 16), interpolation=cv2.INTER_LINEAR))
    assert edge_consistency([src], [small]) == pytest.approx(1.0)
    assert edge_consistency([src, src], [src, noise]) == pytest.approx((1.0 + edge_consistency([src], [noise])) / 2)
    with pytest.raises(ValueError, match='as many translated images'):
        edge_consistency([src], [])
    with pytest.raises(OSError, match='missing.png'):
        edge_consistency([src], [str(tmp_path / 'missing.png')])


def test_image_statistics_by_hand(tmp_path):
    a = np.zeros((2, 3, 3), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = 10, 20, 30
    b = np.zeros((2, 3, 3), np.uint8)
    b[0], b[1] = 0, 100  # per channel: mean 50, std 50
    cv2.imwrite(str(tmp_path / 'a.png'), a)
    cv2.imwrite(str(tmp_path / 'b.png'), b)
    stats_a = image_statistics([str(tmp_path / 'a.png')])
    assert stats_a['mean'] == [10, 20, 30] and stats_a['std'] == [0, 0, 0]
    stats_ab = image_statistics([str(tmp_path / 'a.png'), str(tmp_path / 'b.png')])
    both = np.concatenate([a.reshape(-1, 3), b.reshape(-1, 3)]).astype(np.float64)
    np.testing.assert_allclose(stats_ab['mean'], both.mean(0))
    np.testing.assert_allclose(stats_ab['std'], both.std(0))
    stats_b = image_statistics([str(tmp_path / 'b.png')])
    # |10-50| + |20-50| + |30-50| + 3 x |0-50|, over 6
    assert statistics_distance(stats_a, stats_b) == pytest.approx((40 + 30 + 20 + 150) / 6)


class LabelCopier(torch.nn.Module):
    """A segmentor that predicts a fixed function of the true label (the identity, or one class everywhere)."""

    def __init__(self, constant=None):
        super().__init__()
        self.constant = constant
        self.inputs = []

    def test_step(self, data):
        samples = data['data_samples']
        self.inputs.append(data['inputs'][0].float().mean().item())
        for sample in samples:
            label = sample.gt_sem_seg.data.clone()
            label[label == 255] = 0
            if self.constant is not None:
                label[:] = self.constant
            sample.pred_sem_seg = PixelData(data=label)
        return samples


def source_cfg(toy):
    return dict(type='GTA5Dataset', data_root=osp.join(toy, 'gta5'), data_prefix=dict(img_path='images',
                                                                                       seg_map_path='labels'),
                pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                          dict(type='Resize', scale=(64, 36), keep_ratio=False), dict(type='PackSegInputs')])


def test_translation_consistency_reads_the_translated_images(toy_root, tmp_path):
    import bdl_mm  # noqa: F401
    toy = toy_root  # the session's toy pair, read only
    translated = tmp_path / 'translated'
    shutil.copytree(osp.join(toy, 'gta5', 'images'), translated)
    for name in os.listdir(translated):  # S': the source images inverted
        cv2.imwrite(str(translated / name), 255 - cv2.imread(str(translated / name)))
    model = LabelCopier()
    out = translation_consistency(model, source_cfg(toy), str(translated), num_classes=19, num_images=2)
    assert out == dict(miou_on_source=100.0, miou_on_translated=100.0, num_images=2)
    assert len(model.inputs) == 4 and model.inputs[0] + model.inputs[2] == pytest.approx(255, abs=1)  # S, then S'
    # one class everywhere: mIoU = IoU(road) / number of classes present, from the labels by hand
    labels = []
    for name in sorted(os.listdir(osp.join(toy, 'gta5', 'labels')))[:1]:
        lab = cv2.imread(osp.join(toy, 'gta5', 'labels', name.replace('.png', '_labelTrainIds.png')),
                         cv2.IMREAD_UNCHANGED)
        labels.append(lab)
    out = translation_consistency(LabelCopier(constant=0), source_cfg(toy), str(translated), 19, num_images=1)
    lab = labels[0]
    present = np.unique(lab[lab != 255])
    expected = 100 * ((lab == 0).sum() / (lab != 255).sum()) / len(present)
    assert out['miou_on_source'] == pytest.approx(expected, rel=1e-6)


def test_miou_of_a_confusion_matrix():
    conf = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    assert miou(conf) == pytest.approx(100 * (3 / 4 + 2 / 3) / 2)  # class 2 absent: left out


def test_pseudo_label_precision_by_hand(tmp_path):
    import bdl_mm  # noqa: F401
    root = tmp_path / 'cs'
    img_dir, gt_dir, pl_dir = root / 'leftImg8bit/train/c', root / 'gtFine/train/c', tmp_path / 'pl' / 'c'
    for d in (img_dir, gt_dir, pl_dir):
        d.mkdir(parents=True)
    cv2.imwrite(str(img_dir / 'c_000000_000000_leftImg8bit.png'), np.zeros((4, 8, 3), np.uint8))
    gt = np.zeros((4, 8), np.uint8)
    gt[:, 4:] = 2
    gt[0, 0] = 255  # ignored in the true labels: left out
    cv2.imwrite(str(gt_dir / 'c_000000_000000_gtFine_labelTrainIds.png'), gt)
    pl = np.full((2, 4), 255, np.uint8)  # half the size: the true labels are resized (nearest)
    pl[0, :] = [0, 0, 2, 2]  # gt (nearest) row 0: [255, 0, 2, 2] -> 0 at 255 left out, 0 right, 2 right x 2
    pl[1, :2] = [2, 0]  # gt row 1 (from row 2): [0, 0, ...] -> 2 wrong, 0 right
    cv2.imwrite(str(pl_dir / 'c_000000_000000_leftImg8bit.png'), pl)
    # building is unsure (median confidence 0.4 < 0.5): flagged, label-free; road is sure and common
    summary = dict(kept_ratio=0.75, kept_ratio_per_class=[0.5, None, 1.0], class_medians=[0.9, None, 0.4],
                   predicted_pixels_per_class=[4, 0, 3], total_pixels=7)
    classes = ('road', 'sidewalk', 'building')
    dataset = dict(type='CityscapesDataset', data_root=str(root),
                   data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'), pipeline=[])
    out = pseudo_label_diagnostics(str(tmp_path / 'pl'), summary, classes, dataset)
    assert out['kept_ratio'] == 0.75 and out['kept_ratio_per_class'] == {'road': 0.5, 'building': 1.0}
    # kept and labelled: road 2 (2 right), building 3 (2 right)
    assert out['precision'] == pytest.approx(100 * 4 / 5)
    assert out['precision_per_class'] == {'road': 100.0, 'building': pytest.approx(100 * 2 / 3)}
    assert out['flagged'] == {'building': ['unsure']}
    assert out['precision_flagged'] == pytest.approx(100 * 2 / 3) and out['precision_unflagged'] == 100.0
    unlabelled = pseudo_label_diagnostics(str(tmp_path / 'pl'), summary, classes, None)
    assert 'precision' not in unlabelled and unlabelled['flagged'] == {'building': ['unsure']}


def test_label_free_flags_by_hand():
    classes = ('road', 'pole', 'light', 'sky', 'bus')
    # 10,000 pixels: road sure and common; pole unsure (0.43); light predicted on 9 pixels (0.09% < 0.1%) and
    # unsure; sky exactly at the bounds (median 0.5, 10 pixels = 0.1%): not flagged; bus never predicted: not listed
    summary = dict(class_medians=[0.95, 0.43, 0.3, 0.5, None], predicted_pixels_per_class=[9000, 981, 9, 10, 0],
                   total_pixels=10000)
    assert label_free_flags(summary, classes) == {'pole': ['unsure'], 'light': ['unsure', 'rare']}
    # a summary of an older run (no per-class pixel counts, no medians) flags nothing rather than failing
    assert label_free_flags(dict(kept_ratio=0.5), classes) == {}
    # a later round, against the pseudo labels its M trained on (shares of 1,000 pixels there): pole 981 / 10,000
    # = 9.8% now against 6.5% (x1.51 > 1.5): growing; road 90% against 60.1% (x1.498): not; light was never
    # predicted there (0 -> 0.09%): growing; sky 0.1% against 0.1%: not
    previous = dict(class_medians=[0.9] * 5, predicted_pixels_per_class=[601, 65, 0, 1, 333], total_pixels=1000)
    assert label_free_flags(summary, classes, previous) == {'pole': ['unsure', 'growing'],
                                                            'light': ['unsure', 'rare', 'growing']}


def test_a_later_ssl_round_is_flagged_against_the_labels_its_m_trained_on(tmp_path):
    """The pseudo-label stage finds the summary of the pseudo labels its labelling M trained on: none for the
    first SSL round of a round (M_0(k) trained on none), the round's previous SSL stage for the next one, in
    every track."""
    import json
    from types import SimpleNamespace

    from bdl_mm.engine.stages.diagnostics import previous_summary
    from bdl_mm.structures.plan import build_plan
    m = dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=2))
    plan = build_plan(dict(stages=dict(source_only=m, adaptation=m, ssl_adaptation=m, translation=dict(config='x.py'),
                                       pseudo_label=dict(mode='class_median')),
                           K=2, N=2, references=dict(fda=dict(translation=dict(type='FDA', beta=0.01)))))
    state = {}
    for name in ('k1/ssl1', 'k2/ssl1', 'ref/fda/k1/ssl1'):
        path = tmp_path / name.replace('/', '_')
        path.write_text(json.dumps(dict(stage=name)))
        state[name] = dict(summary=str(path))
    ctx = SimpleNamespace(plan=plan, state=state)
    ssl = [s for s in plan if s.kind == 'pseudo_label']
    found = {s.name: (previous_summary(ctx, s) or {}).get('stage') for s in ssl}
    assert found == {'k1/ssl1': None, 'k1/ssl2': 'k1/ssl1', 'k2/ssl1': None, 'k2/ssl2': 'k2/ssl1',
                     'ref/fda/k1/ssl1': None, 'ref/fda/k1/ssl2': 'ref/fda/k1/ssl1'}
