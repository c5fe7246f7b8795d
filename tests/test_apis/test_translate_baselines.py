"""translate_dataset with a translation baseline (FDA) in F's place: per image by its relative path, sharded, atomic
and resumable as with F's generator."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from bdl_mm.apis import translate_dataset
from bdl_mm.models.translators import FDATranslator


@pytest.fixture()
def data(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / 'src'
    for i in range(5):
        sub = src / ('a' if i % 2 else 'b')
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f'{i:03d}.png'), rng.integers(0, 256, (12 + i, 20, 3)).astype(np.uint8))
    targets = []
    for i in range(3):
        path = str(tmp_path / f't{i}.png')
        cv2.imwrite(path, rng.integers(0, 256, (10, 16, 3)).astype(np.uint8))
        targets.append(path)
    fda = FDATranslator(beta=0.2, seed=1)
    fda.fit(targets)
    return str(src), fda


def read_all(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            out[osp.relpath(path, root)] = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return out


def test_baseline_translation_is_per_image_sharded_and_resumable(data, tmp_path):
    src, fda = data
    whole = tmp_path / 'whole'
    stats = translate_dataset(fda, src, str(whole), num_workers=0, progress=False, batch_size=4)
    assert (stats['total'], stats['written'], stats['existing']) == (5, 5, 0)
    outputs = read_all(whole)
    assert sorted(outputs) == sorted(read_all(src))  # same relative paths and names
    for rel, img in outputs.items():  # each image by its relative path (the key FDA draws its target from)
        np.testing.assert_array_equal(img, fda.translate(cv2.imread(osp.join(src, rel)), rel))
    # two shards (e.g. two ranks) together write exactly the same files
    sharded = tmp_path / 'sharded'
    counts = [translate_dataset(fda, src, str(sharded), shard_id=k, num_shards=2, num_workers=0, progress=False)
              for k in range(2)]
    assert [c['total'] for c in counts] == [3, 2]
    again = read_all(sharded)
    assert sorted(again) == sorted(outputs) and all(np.array_equal(again[k], outputs[k]) for k in outputs)
    # resumable: a finished file is kept, a missing one (and the leftover of a killed write) redone
    os.remove(osp.join(whole, 'a', '001.png'))
    with open(osp.join(whole, 'a', '.001.png.part'), 'wb') as f:
        f.write(b'partial')
    resumed = translate_dataset(fda, src, str(whole), num_workers=0, progress=False)
    assert (resumed['written'], resumed['existing']) == (1, 4)
    assert not osp.exists(osp.join(whole, 'a', '.001.png.part'))
    np.testing.assert_array_equal(cv2.imread(osp.join(whole, 'a', '001.png')), outputs[osp.join('a', '001.png')])


def test_generator_only_settings_are_refused(data, tmp_path):
    src, fda = data
    with pytest.raises(ValueError, match='scale and target_domain apply to a generator'):
        translate_dataset(fda, src, str(tmp_path / 'out'), scale=64, num_workers=0, progress=False)


def test_full_disk_names_the_file_and_leaves_only_whole_images(data, tmp_path, monkeypatch):
    from disk_full import fill_disk_after

    from bdl_mm.utils.atomic_io import DiskFullError
    src, fda = data
    out = tmp_path / 'out'
    fill_disk_after(monkeypatch, 2)  # the 3rd image meets a full disk
    with pytest.raises(DiskFullError, match=r'^no space left on the device to write .*\.png \(nothing of it was kept'):
        translate_dataset(fda, src, str(out), num_workers=0, progress=False)
    written = read_all(out)
    assert len(written) == 2 and all(img is not None for img in written.values())  # two whole images, no part
    monkeypatch.undo()  # space freed: a rerun writes the rest
    stats = translate_dataset(fda, src, str(out), num_workers=0, progress=False)
    assert (stats['existing'], stats['written']) == (2, 3)
    for rel, img in read_all(out).items():
        np.testing.assert_array_equal(img, fda.translate(cv2.imread(osp.join(src, rel)), rel))
