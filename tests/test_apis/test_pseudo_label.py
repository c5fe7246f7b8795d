# Copyright (c) bdl_mm contributors.
"""SSL pseudo labels (BDL Sec. 3.2): threshold functions against numpy, and the pseudo-label folder end to end."""
import importlib.util
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from bdl_mm.apis import ssl_thresholds as T
from bdl_mm.apis.pseudo_label import conf_path, generate_pseudo_labels

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_spec = importlib.util.spec_from_file_location('benchmark_pseudo_label',
                                               osp.join(REPO, 'tools', 'benchmark_pseudo_label.py'))
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)

H, W = 24, 48  # label size (the pipeline's Resize)


def synthetic_probs(seed=0, n=3, c=4, h=16, w=20, never=3):
    """Softmax maps where class ``never`` is never the argmax."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c, h, w)) * 3
    logits[:, never] -= 100
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


# ------------------------------------------------------------------------------------------- pure functions
def test_quantisation_roundtrip():
    conf = np.array([0.0, 0.25, 0.9, 0.90000001, 1.0])
    q = T.quantize_confidence(conf)
    assert q.dtype == np.uint16 and q[0] == 0 and q[-1] == T.CONF_LEVELS
    assert np.abs(T.dequantize_confidence(q) - conf).max() <= 0.5 / T.CONF_LEVELS


def test_hand_example_three_modes():
    label = np.array([[0, 1, 2], [1, 0, 2]])
    conf = np.array([[0.95, 0.9, 0.5], [0.3, 0.6, 0.91]])
    pl, w = T.pseudo_label(label, conf, 'global', 0.9)
    assert w is None
    # paper rule: strictly above 0.9; the pixel at exactly 0.9 is dropped
    np.testing.assert_array_equal(pl, [[0, 255, 255], [255, 255, 2]])
    pl, _ = T.pseudo_label(label, conf, 'class_median', 0.9, class_thresholds=[0.6, 0.3, np.nan])
    # release rule: conf >= threshold_c; class 2 has no threshold -> dropped
    np.testing.assert_array_equal(pl, [[0, 1, 255], [1, 0, 255]])
    pl, w = T.pseudo_label(label, conf, 'soft')
    np.testing.assert_array_equal(pl, label)
    np.testing.assert_array_equal(w, conf)
    np.testing.assert_array_equal(T.weight_to_uint8(w), [[242, 230, 128], [76, 153, 232]])
    with pytest.raises(ValueError, match='unknown pseudo-label mode'):
        T.pseudo_label(label, conf, 'median')


def test_median_from_histogram_matches_numpy_definition():
    for values in ([0.2, 0.4, 0.6, 0.8], [0.2, 0.4, 0.6], [0.7], [0.5, 0.5, 0.9, 0.1, 0.3, 0.3]):
        q = T.quantize_confidence(np.array(values))
        hist = T.accumulate_histogram(T.empty_histogram(2), np.zeros(len(values), int), q)
        med = T.median_from_histogram(hist)
        assert med[0] == pytest.approx(np.median(T.dequantize_confidence(q)), abs=1e-12)
        assert np.isnan(med[1])


def test_synthetic_maps_all_modes_match_numpy():
    probs = synthetic_probs()
    label, conf = probs.argmax(1), probs.max(1)
    hist = T.empty_histogram(4)
    for i in range(len(label)):
        T.accumulate_histogram(hist, label[i], T.quantize_confidence(conf[i]))
    assert hist.sum() == label.size
    np.testing.assert_array_equal(hist.sum(1), np.bincount(label.ravel(), minlength=4))

    thr = T.class_median_thresholds(hist, 0.9)
    for c in range(3):
        x = conf[label == c]
        assert abs(np.median(x) - T.median_from_histogram(hist)[c]) < 1e-3
        assert thr[c] == pytest.approx(min(np.median(x), 0.9), abs=1e-3)
    assert np.isnan(thr[3])  # never predicted: no threshold
    assert 0.0 < np.nanmin(thr) and np.nanmax(thr) <= 0.9

    for i in range(len(label)):
        pl, _ = T.pseudo_label(label[i], conf[i], 'global', 0.8)
        np.testing.assert_array_equal(pl, np.where(conf[i] > 0.8, label[i], 255))
        pl, _ = T.pseudo_label(label[i], conf[i], 'class_median', 0.9, thr)
        expect = label[i].copy()
        for c in range(4):
            expect[(label[i] == c) & ~(conf[i] >= thr[c])] = 255
        np.testing.assert_array_equal(pl, expect)
        assert not (pl == 3).any()
        pl, w = T.pseudo_label(label[i], conf[i], 'soft')
        np.testing.assert_array_equal(pl, label[i])
        np.testing.assert_array_equal(w, conf[i])

    # counts from the histogram = counts of the labels computed on the quantised confidences
    cq = T.dequantize_confidence(T.quantize_confidence(conf))
    for mode, kw in (('global', dict(threshold=0.8)), ('class_median', dict(class_thresholds=thr)), ('soft', {})):
        kept = T.kept_pixels_from_histogram(hist, mode, **kw)
        pls = np.stack([T.pseudo_label(label[i], cq[i], mode, **kw)[0] for i in range(len(label))])
        np.testing.assert_array_equal(kept, [(pls == c).sum() for c in range(4)])

    t, r = T.threshold_study(hist)
    assert len(t) == 50 and t[0] == 0.5 and t[-1] == 0.99
    np.testing.assert_allclose(r, [(cq > x).mean() for x in t])
    assert np.all(np.diff(r) <= 0)


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def target(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('target'))
    toy.make_toy_target(root, 5, height=40, width=80)
    return root


@pytest.fixture(scope='module')
def model():
    return toy.build_tiny_segmentor(num_classes=19, seed=1)


def loader_cfg(root, batch_size=1):
    return dict(batch_size=batch_size, num_workers=0, dataset=toy.toy_dataset_cfg(root, H, W))


def reference_predictions(model, root):
    """argmax and quantised max probability per image, computed here independently of the API."""
    from mmengine.dataset import pseudo_collate
    from mmseg.registry import DATASETS
    ds = DATASETS.build(toy.toy_dataset_cfg(root, H, W))
    out = {}
    with torch.no_grad():
        for i in range(len(ds)):
            data = model.data_preprocessor(pseudo_collate([ds[i]]), False)
            logits = model.encode_decode(data['inputs'], [s.metainfo for s in data['data_samples']])
            p = torch.softmax(logits, 1)[0].numpy()
            rel = osp.relpath(ds.get_data_info(i)['img_path'], ds.data_prefix['img_path'])
            out[rel] = (p.argmax(0), T.quantize_confidence(p.max(0)), p.max(0))
    return out


def read(path):
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize('mode', ['class_median', 'global', 'soft'])
def test_folder_matches_independent_computation(tmp_path, target, model, mode):
    out = str(tmp_path / 'pl')
    summary = generate_pseudo_labels(model, loader_cfg(target), out, mode=mode, threshold=0.9, progress=False)
    ref = reference_predictions(model, target)
    assert summary['complete'] and summary['num_images'] == 5 and summary['image_size'] == [[H, W]]
    labels, confs = [], []
    for rel, (lab, cq, _) in ref.items():
        assert rel.endswith('_leftImg8bit.png') and '/' in rel  # <city>/<name>_leftImg8bit.png
        pl = read(osp.join(out, rel))
        assert pl.dtype == np.uint8 and pl.shape == (H, W)
        labels.append(lab)
        confs.append(cq)
        if mode == 'soft':
            np.testing.assert_array_equal(pl, lab)
            np.testing.assert_array_equal(read(conf_path(osp.join(out, rel))),
                                          np.rint(T.dequantize_confidence(cq) * 255).astype(np.uint8))
        else:
            assert not osp.exists(conf_path(osp.join(out, rel)))
    labels, confs = np.stack(labels), np.stack(confs)
    conf_f = T.dequantize_confidence(confs)
    all_conf = np.stack([v[2] for v in ref.values()])

    with open(osp.join(out, 'summary.json')) as f:
        on_disk = json.load(f)
    assert on_disk['mode'] == mode and on_disk['num_classes'] == 19 and on_disk['threshold'] == 0.9
    pls = np.stack([read(osp.join(out, rel)) for rel in ref])
    if mode == 'global':
        np.testing.assert_array_equal(pls, np.where(conf_f > 0.9, labels, 255))
        assert on_disk['class_thresholds'] is None
    elif mode == 'class_median':
        expect = labels.copy()
        for c in range(19):
            sel = labels == c
            if not sel.any():
                assert on_disk['class_thresholds'][c] is None and on_disk['kept_pixels_per_class'][c] == 0
                continue
            t = on_disk['class_thresholds'][c]
            assert abs(t - min(np.median(all_conf[sel]), 0.9)) < 1e-3  # float confidences, numpy.median
            expect[sel & (conf_f < t)] = 255
        np.testing.assert_array_equal(pls, expect)
        assert any(t is None for t in on_disk['class_thresholds'])  # the toy model never predicts some classes
    # JSON figures = the PNGs
    assert on_disk['total_pixels'] == pls.size
    assert on_disk['kept_pixels_per_class'] == [int((pls == c).sum()) for c in range(19)]
    assert on_disk['predicted_pixels_per_class'] == [int((labels == c).sum()) for c in range(19)]
    assert on_disk['kept_ratio'] == pytest.approx((pls != 255).mean())
    assert 0.0 < on_disk['kept_ratio'] <= 1.0
    # threshold study from the same histograms
    rows = np.loadtxt(osp.join(out, 'threshold_study.csv'), delimiter=',', skiprows=1)
    np.testing.assert_allclose(rows[:, 1], [(conf_f > t).mean() for t in rows[:, 0]], atol=1e-6)
    assert osp.getsize(osp.join(out, 'threshold_study.png')) > 1000
    assert not os.listdir(osp.join(out, '_cache', os.listdir(osp.join(out, '_cache'))[0], 'pred', 'aachen'))


def test_resume_overwrite_and_foreign_folder(tmp_path, target, model):
    out = str(tmp_path / 'pl')
    generate_pseudo_labels(model, loader_cfg(target), out, mode='class_median', keep_cache=True, progress=False)
    rels = sorted(reference_predictions(model, target))
    first = read(osp.join(out, rels[0]))
    stamp = os.stat(osp.join(out, rels[1])).st_mtime_ns
    os.remove(osp.join(out, rels[0]))  # an interrupted pass 2
    summary = generate_pseudo_labels(model, loader_cfg(target), out, mode='class_median', keep_cache=True,
                                     progress=False)
    assert summary['complete']
    np.testing.assert_array_equal(read(osp.join(out, rels[0])), first)
    assert os.stat(osp.join(out, rels[1])).st_mtime_ns == stamp  # skipped, not rewritten

    with pytest.raises(FileExistsError, match='mode, threshold'):
        generate_pseudo_labels(model, loader_cfg(target), out, mode='global', threshold=0.8, progress=False)
    summary = generate_pseudo_labels(model, loader_cfg(target), out, mode='global', threshold=0.8, overwrite=True,
                                     progress=False)
    assert summary['mode'] == 'global'
    ref = reference_predictions(model, target)
    lab, cq, _ = ref[rels[0]]
    np.testing.assert_array_equal(read(osp.join(out, rels[0])),
                                  np.where(T.dequantize_confidence(cq) > 0.8, lab, 255))
    assert len(os.listdir(osp.join(out, '_cache'))) == 1  # the old run's cache is gone

    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'x.png').write_bytes(b'')
    with pytest.raises(FileExistsError, match='holds no settings.json'):
        generate_pseudo_labels(model, loader_cfg(target), str(foreign), progress=False)


def test_class_count_mismatch_writes_nothing(tmp_path, target):
    small = toy.build_tiny_segmentor(num_classes=7)
    out = tmp_path / 'pl'
    with pytest.raises(ValueError, match='7 classes but the target set CityscapesDataset has 19'):
        generate_pseudo_labels(small, loader_cfg(target), str(out), progress=False)
    assert not out.exists()


def test_shards_equal_single_run(tmp_path, target, model):
    single = str(tmp_path / 'single')
    generate_pseudo_labels(model, loader_cfg(target), single, progress=False)
    sharded = str(tmp_path / 'sharded')
    s0 = generate_pseudo_labels(model, loader_cfg(target), sharded, shard_id=0, num_shards=2, wait_for_shards=False,
                                progress=False)
    assert not s0['complete'] and not osp.exists(osp.join(sharded, 'summary.json'))
    s1 = generate_pseudo_labels(model, loader_cfg(target), sharded, shard_id=1, num_shards=2, progress=False)
    assert not s1['complete']  # shard 0 has not written its labels yet
    s0 = generate_pseudo_labels(model, loader_cfg(target), sharded, shard_id=0, num_shards=2, progress=False)
    assert s0['complete']
    for rel in reference_predictions(model, target):
        np.testing.assert_array_equal(read(osp.join(sharded, rel)), read(osp.join(single, rel)))
    with open(osp.join(single, 'summary.json')) as f:
        a = json.load(f)
    with open(osp.join(sharded, 'summary.json')) as f:
        b = json.load(f)
    assert a['class_thresholds'] == b['class_thresholds'] and a['kept_pixels_per_class'] == b['kept_pixels_per_class']


def test_batched_inference_agrees(tmp_path, target, model):
    """Batches of 3 (5 images: a full and a partial batch) give the labels of one-image batches."""
    one = generate_pseudo_labels(model, loader_cfg(target, 1), str(tmp_path / 'b1'), progress=False)
    three = generate_pseudo_labels(model, loader_cfg(target, 3), str(tmp_path / 'b3'), progress=False)
    for a, b in zip(one['class_thresholds'], three['class_thresholds']):
        assert (a is None and b is None) or abs(a - b) < 1e-4
    agree = [(read(str(tmp_path / 'b1' / rel)) == read(str(tmp_path / 'b3' / rel))).mean()
             for rel in reference_predictions(model, target)]
    assert min(agree) > 0.999


def test_distributed_path_all_reduces(tmp_path, target, model):
    """Under torch.distributed (gloo, one rank) the histograms go through all_reduce; same folder as without."""
    import socket

    import torch.distributed as dist
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)
    try:
        summary = generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'dist'), progress=False)
    finally:
        dist.destroy_process_group()
    plain = generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'plain'), progress=False)
    assert summary['complete'] and summary['num_shards'] == 1
    assert summary['class_thresholds'] == plain['class_thresholds']
    assert summary['kept_pixels_per_class'] == plain['kept_pixels_per_class']
    assert summary['image_size'] == plain['image_size'] == [[H, W]]
    for rel in reference_predictions(model, target):
        np.testing.assert_array_equal(read(str(tmp_path / 'dist' / rel)), read(str(tmp_path / 'plain' / rel)))


def test_full_disk_leaves_nothing_a_rerun_trusts(tmp_path, target, model, monkeypatch):
    from disk_full import fill_disk_after

    from bdl_mm.utils.atomic_io import DiskFullError
    out = str(tmp_path / 'pl')
    whole = str(tmp_path / 'whole')
    generate_pseudo_labels(model, loader_cfg(target), whole, mode='class_median', progress=False)
    fill_disk_after(monkeypatch, 4)  # settings and the first predictions fit, then the disk is full
    with pytest.raises(DiskFullError, match='^no space left on the device to write '):
        generate_pseudo_labels(model, loader_cfg(target), out, mode='class_median', progress=False)
    left = [osp.join(d, f) for d, _, files in os.walk(out) for f in files]
    assert not any(f.endswith('.part') for f in left) and not osp.exists(osp.join(out, 'summary.json'))
    monkeypatch.undo()
    summary = generate_pseudo_labels(model, loader_cfg(target), out, mode='class_median', progress=False)
    assert summary['complete']
    for rel in reference_predictions(model, target):  # the same labels as a run that never met a full disk
        np.testing.assert_array_equal(read(osp.join(out, rel)), read(osp.join(whole, rel)))


def test_floor_raises_the_class_thresholds_by_hand():
    # medians (numpy) 0.3, 0.6 and 0.95 of three classes; class 3 never predicted
    hist = T.empty_histogram(4)
    for c, confs in enumerate(([0.2, 0.3, 0.4], [0.5, 0.6, 0.7], [0.9, 0.95, 0.99])):
        for x in confs:
            T.accumulate_histogram(hist, np.array([[c]]), T.quantize_confidence(np.array([[x]])))
    off = T.class_median_thresholds(hist, 0.9)
    on = T.class_median_thresholds(hist, 0.9, floor=0.5)
    np.testing.assert_allclose(off[:3], [0.3, 0.6, 0.9], atol=1e-4)
    np.testing.assert_allclose(on[:3], [0.5, 0.6, 0.9], atol=1e-4)  # only the unsure class is raised
    assert np.isnan(off[3]) and np.isnan(on[3])  # a class never predicted still gets no threshold


def test_floor_in_the_pipeline_and_its_settings(tmp_path, target, model):
    off = generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'off'), threshold=1.0, progress=False)
    medians = [t for t in off['class_thresholds'] if t is not None]  # no cap: the class medians
    floor = max(medians)
    assert min(medians) < floor  # the floor has work to do: it raises the least sure class
    on = generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'on'), threshold=1.0, floor=floor,
                                progress=False)
    assert 'floor' not in off and on['floor'] == floor  # off: the release's settings, unchanged
    for t_off, t_on in zip(off['class_thresholds'], on['class_thresholds']):
        assert (t_off is None and t_on is None) or t_on == pytest.approx(max(t_off, floor))
    assert on['kept_ratio'] < off['kept_ratio']
    for rel in reference_predictions(model, target):  # every label kept with the floor is kept without it
        a, b = read(osp.join(tmp_path / 'on', rel)), read(osp.join(tmp_path / 'off', rel))
        assert ((a == 255) | (a == b)).all()
    with pytest.raises(ValueError, match='class_median'):
        generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'g'), mode='global', floor=0.5)
    with pytest.raises(ValueError, match='floor must be in'):
        generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'g'), floor=0.95)


def test_portion_thresholds_by_hand():
    # class 0: ten confidences 0.1 .. 1.0; class 1: four; class 2 never predicted
    hist = T.empty_histogram(3)
    for c, confs in enumerate((np.arange(1, 11) / 10, [0.5, 0.6, 0.7, 0.8])):
        for x in confs:
            T.accumulate_histogram(hist, np.array([[c]]), T.quantize_confidence(np.array([[x]])))
    # top 20 %: sorted index round(10 * 0.8) = 8 -> 0.9 (keeps 0.9 and 1.0); round(4 * 0.8) = 3 -> 0.8
    np.testing.assert_allclose(T.class_median_thresholds(hist, 1.0, 'release', portion=0.2)[:2], [0.9, 0.8], atol=1e-4)
    # portion 0.5 is the release's median, whatever the counts
    np.testing.assert_array_equal(T.class_median_thresholds(hist, 0.9, 'release', portion=0.5),
                                  T.class_median_thresholds(hist, 0.9, 'release'))
    # portion 1 keeps every pixel: the least confidence; the cap and the floor still apply
    np.testing.assert_allclose(T.class_median_thresholds(hist, 1.0, 'release', portion=1.0)[:2], [0.1, 0.5], atol=1e-4)
    np.testing.assert_allclose(T.class_median_thresholds(hist, 0.85, 'release', floor=0.6, portion=0.2)[:2],
                               [0.85, 0.8], atol=1e-4)
    assert np.isnan(T.class_median_thresholds(hist, 0.9, portion=0.2)[2])
    with pytest.raises(ValueError, match='portion must be in'):
        T.portion_from_histogram(hist, 0.0)


def test_portion_in_the_pipeline_and_its_settings(tmp_path, target, model):
    off = generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'off'), threshold=1.0, progress=False)
    small = generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'small'), threshold=1.0, portion=0.2,
                                   progress=False)
    assert 'portion' not in off and small['portion'] == 0.2
    assert small['kept_ratio'] < off['kept_ratio']
    for t_off, t_small in zip(off['class_thresholds'], small['class_thresholds']):
        assert (t_off is None and t_small is None) or t_small >= t_off
    for rel in reference_predictions(model, target):  # the top 20 % of a class lie inside its top half
        a, b = read(osp.join(tmp_path / 'small', rel)), read(osp.join(tmp_path / 'off', rel))
        assert ((a == 255) | (a == b)).all()
    with pytest.raises(ValueError, match='class_median'):
        generate_pseudo_labels(model, loader_cfg(target), str(tmp_path / 'g'), mode='soft', portion=0.2)


def test_portion_grows_with_the_ssl_rounds():
    from bdl_mm.engine.stages.pseudo_labels import round_settings
    from bdl_mm.structures.plan import PSEUDO_LABEL, Stage
    base = dict(mode='class_median', threshold=0.9, portion=0.2, portion_step=0.1)
    got = [round_settings(base, Stage('x', PSEUDO_LABEL, k=k, i=i), N=2)['portion']
           for k in (1, 2) for i in (1, 2)]
    assert got == [0.2, 0.3, 0.4, 0.5]  # rounds 1..4 over K = 2, N = 2
    assert 'portion_step' not in round_settings(base, Stage('x', PSEUDO_LABEL, k=1, i=1), N=2)
    assert round_settings(dict(base, portion=0.9), Stage('x', PSEUDO_LABEL, k=2, i=2), N=2)['portion'] == 1.0
    release = dict(mode='class_median', threshold=0.9, median='release')
    assert round_settings(release, Stage('x', PSEUDO_LABEL, k=2, i=1), N=2) == release  # off: unchanged
    with pytest.raises(ValueError, match='starting portion'):
        round_settings(dict(mode='class_median', portion_step=0.1), Stage('x', PSEUDO_LABEL, k=1, i=1), N=2)
