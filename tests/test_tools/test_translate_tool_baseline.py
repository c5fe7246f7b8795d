"""tools/translate.py with the translator.json of a fitted baseline (FDA) instead of F's config and checkpoint."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from toy_helpers import ROOT, load_tool

from bdl_mm.models.translators import FDATranslator


def test_translate_tool_applies_a_fitted_baseline_record(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(osp.join(ROOT, 'tools'))  # tools/_bootstrap.py, as the script runs
    tool = load_tool('translate.py')
    rng = np.random.default_rng(0)
    src = tmp_path / 'src'
    for i, sub in enumerate(('a', 'a', 'b')):
        os.makedirs(src / sub, exist_ok=True)
        cv2.imwrite(str(src / sub / f'{i:03d}.png'), rng.integers(0, 256, (12 + i, 20, 3)).astype(np.uint8))
    targets = []
    for i in range(2):
        targets.append(str(tmp_path / f't{i}.png'))
        cv2.imwrite(targets[-1], rng.integers(0, 256, (10, 16, 3)).astype(np.uint8))
    fda = FDATranslator(beta=0.2, seed=1)
    fda.fit(targets)
    record = tmp_path / 'translator.json'  # as the translation stage writes it
    record.write_text(json.dumps(dict(fda.to_record(), num_target_images=2)))
    out = tmp_path / 'out'
    assert tool.main([str(record), '--src', str(src), '--out', str(out), '--num-workers', '0', '--no-progress']) == 0
    assert f'{out}: 3 written, 0 already there, 0 skipped' in capsys.readouterr().out
    for rel in ('a/000.png', 'a/001.png', 'b/002.png'):  # at the source's size, keyed by the relative path
        expected = fda.translate(cv2.imread(str(src / rel)), rel)
        np.testing.assert_array_equal(cv2.imread(str(out / rel)), expected)
        assert not np.array_equal(expected, cv2.imread(str(src / rel)))
    with pytest.raises(SystemExit, match=r'translator.json is a fitted baseline: it takes no checkpoint$'):
        tool.main([str(record), 'f.pth', '--src', str(src), '--out', str(out)])
    with pytest.raises(SystemExit, match=r'^error: the F checkpoint is missing'):
        tool.main([osp.join(ROOT, 'configs/translation/perceptual_cyclegan_base.py'), '--src', str(src),
                   '--out', str(out)])
