"""UDAIoUMetric: exact IoUs on hand-made cases, the 16/13-class subsets, and agreement with cityscapesscripts."""
import math

import numpy as np
import pytest
import torch
from mmseg.datasets import CityscapesDataset

from bdl_mm.evaluation.metrics import (
    MIOU13_CLASSES,
    MIOU16_CLASSES,
    UDAIoUMetric,
    confusion_matrix,
    ious_from_confusion,
    summarize_ious,
)

CLASSES = CityscapesDataset.METAINFO['classes']


def sample(pred, label, path='a_gtFine_labelTrainIds.png'):
    return dict(pred_sem_seg=dict(data=torch.as_tensor(pred)[None]), gt_sem_seg=dict(data=torch.as_tensor(label)[None]),
                seg_map_path=path, img_path=path)


def run_metric(pairs, **kwargs):
    metric = UDAIoUMetric(decimals=None, **kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    for pred, label in pairs:
        metric.process({}, [sample(pred, label)])
    return metric.compute_metrics(metric.results)


def test_hand_made_confusion():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 5, 3]])
    conf = confusion_matrix(pred, label, 19)
    assert conf.sum() == 6 and conf[0, 0] == 1 and conf[0, 1] == 1 and conf[1, 1] == 2 and conf[2, 0] == 1
    ious = ious_from_confusion(conf)
    assert ious[0] == pytest.approx(1 / 3) and ious[1] == pytest.approx(2 / 3) and ious[2] == pytest.approx(1 / 2)
    # classes predicted only on ignored pixels, or absent, have no IoU
    assert np.isnan(ious[3:]).all()
    metrics = run_metric([(pred, label)])
    assert metrics['mIoU'] == pytest.approx(50.0)
    assert metrics['mIoU16'] == pytest.approx(50.0) and metrics['mIoU13'] == pytest.approx(50.0)
    assert metrics['aAcc'] == pytest.approx(400 / 6)
    assert metrics['IoU.road'] == pytest.approx(100 / 3) and math.isnan(metrics['IoU.wall'])
    assert list(metrics)[-19:] == [f'IoU.{c}' for c in CLASSES]  # paper column order


def test_results_accumulate_over_images():
    a = (np.array([[0, 0], [13, 13]]), np.array([[0, 13], [13, 13]]))
    b = (np.array([[13, 13], [13, 13]]), np.array([[0, 0], [0, 0]]))
    metrics = run_metric([a, b])
    # road: tp 1, fp 0 + 0, fn 1 + 4 -> 1/6; car: tp 2, fp 1 + 4, fn 0 -> 2/7
    assert metrics['IoU.road'] == pytest.approx(100 / 6) and metrics['IoU.car'] == pytest.approx(200 / 7)
    assert metrics['mIoU'] == pytest.approx((100 / 6 + 200 / 7) / 2)


def test_class_subsets_use_the_paper_indices():
    assert MIOU16_CLASSES == (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    assert MIOU13_CLASSES == (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
    assert {CLASSES[i] for i in range(19)} - {CLASSES[i] for i in MIOU16_CLASSES} == {'terrain', 'truck', 'train'}
    assert ({CLASSES[i] for i in MIOU16_CLASSES} - {CLASSES[i] for i in MIOU13_CLASSES}
            == {'wall', 'fence', 'pole'})
    ious = np.arange(19) / 100.
    out = summarize_ious(ious, {'mIoU16': MIOU16_CLASSES, 'mIoU13': MIOU13_CLASSES, 'two': (3, 18)})
    assert out['mIoU'] == pytest.approx(0.09)
    assert out['mIoU16'] == pytest.approx(sum(MIOU16_CLASSES) / 1600)
    assert out['mIoU13'] == pytest.approx(sum(MIOU13_CLASSES) / 1300)
    assert out['two'] == pytest.approx(0.105)
    with pytest.raises(ValueError, match='class 25'):
        summarize_ious(ious, {'bad': (25, )})


def test_custom_subsets_and_rounding():
    metric = UDAIoUMetric(class_subsets={'mIoU3': (0, 1, 2)})
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [sample(np.array([[0, 1, 1]]), np.array([[0, 1, 2]]))])
    metrics = metric.compute_metrics(metric.results)
    assert 'mIoU16' not in metrics and metrics['mIoU3'] == pytest.approx(round(100 * (1 + 0.5 + 0) / 3, 2))
    assert metrics['mIoU'] == 50.0


def test_size_mismatch_names_the_label():
    metric = UDAIoUMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError) as e:
        metric.process({}, [sample(np.zeros((4, 8)), np.zeros((8, 16)), path='/d/x_gtFine_labelTrainIds.png')])
    assert '/d/x_gtFine_labelTrainIds.png' in str(e.value) and '\n' not in str(e.value)


def test_same_numbers_as_cityscapesscripts(tmp_path):
    """Predictions and labels written as Cityscapes files, evaluated by cityscapesscripts and by UDAIoUMetric."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval
    from cityscapesscripts.helpers.labels import labels, trainId2label
    from PIL import Image

    from bdl_mm.datasets.label_maps import build_lut, cityscapes_id_to_train_id

    rng = np.random.default_rng(0)
    ids = np.array([label.id for label in labels if label.id >= 0])
    lut = build_lut(cityscapes_id_to_train_id())
    train_to_id = np.array([trainId2label[t].id for t in range(19)])
    preds, gts, pairs = [], [], []
    for i in range(3):
        gt_ids = rng.choice(ids, size=(32, 64)).astype(np.uint8)  # every label id, void ones included
        gt_train = lut[gt_ids]
        pred_train = np.where(rng.random((32, 64)) < 0.6, gt_train, rng.integers(0, 19, (32, 64)))
        pred_train[gt_train == 255] = rng.integers(0, 19, int((gt_train == 255).sum()))
        if i == 0:
            pred_train[pred_train == 16] = 14  # one class never predicted in one image
        gt_path = tmp_path / f'city_000000_00000{i}_gtFine_labelIds.png'
        pred_path = tmp_path / f'city_000000_00000{i}_pred.png'
        Image.fromarray(gt_ids).save(gt_path)
        Image.fromarray(train_to_id[pred_train].astype(np.uint8)).save(pred_path)
        preds.append(str(pred_path))
        gts.append(str(gt_path))
        pairs.append((pred_train, gt_train))
    args = cs_eval.args
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.exportFile = str(tmp_path / 'result.json')
    result = cs_eval.evaluateImgLists(preds, gts, args)
    reference = np.array([result['classScores'][trainId2label[t].name] for t in range(19)])

    metrics = run_metric(pairs)
    ours = np.array([metrics[f'IoU.{c}'] for c in CLASSES]) / 100
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    assert metrics['mIoU'] / 100 == pytest.approx(result['averageScoreClasses'], abs=1e-6)
    assert metrics['mIoU16'] / 100 == pytest.approx(np.mean(reference[list(MIOU16_CLASSES)]), abs=1e-6)
