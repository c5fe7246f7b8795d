# Copyright (c) bdl_mm contributors.
"""translate_dataset / load_translator / tools/translate.py: every image once, same names and sizes, the
generator's output exactly, resumable after SIGKILL without rewriting finished files, shards, bad input."""
import os
import os.path as osp
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import bdl_mm  # noqa: F401
from bdl_mm.apis.translate import list_images, load_translator, translate_dataset

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE = osp.join(ROOT, 'configs/translation/perceptual_cyclegan_base.py')
SIZES = [(32, 48), (32, 48), (30, 50), (32, 48), (36, 36), (32, 48)]


def make_images(root, sizes=SIZES):
    """Images in two sub-folders; returns {relative path: (h, w)}."""
    rng = np.random.RandomState(0)
    rels = {}
    for i, (h, w) in enumerate(sizes):
        rel = osp.join(f'part{i % 2}', f'{i:05d}.png')
        os.makedirs(osp.join(root, f'part{i % 2}'), exist_ok=True)
        cv2.imwrite(osp.join(root, rel), rng.randint(0, 256, (h, w, 3), dtype=np.uint8))
        rels[rel] = (h, w)
    return rels


@pytest.fixture
def toy(tmp_path):
    """Toy source set, a tiny translation config inheriting the real base config, and an F checkpoint."""
    src = str(tmp_path / 'src')
    sizes = make_images(src)
    cfg = tmp_path / 'f_tiny.py'
    cfg.write_text(f"_base_ = ['{BASE}']\n"
                   "model = dict(generator=dict(base_channels=4, num_blocks=1), discriminator=dict(base_channels=4))\n")
    torch.manual_seed(0)
    model = load_translator(str(cfg))
    for p in model.parameters():  # visible, deterministic weights
        p.data.normal_(0, 0.2, generator=torch.Generator().manual_seed(p.numel()))
    ckpt = str(tmp_path / 'f.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return dict(src=src, rels=sorted(sizes), sizes=sizes, cfg=str(cfg), ckpt=ckpt, tmp=tmp_path)


def expected_output(model, path):
    """The generator's output for one image, computed by hand (RGB [-1, 1] in and out)."""
    img = cv2.imread(path)
    x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1)[None].float()
    h, w = x.shape[-2:]
    x = (x - 127.5) / 127.5
    x = torch.nn.functional.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode='reflect')
    with torch.no_grad():
        y = model.generators['target'](x)[..., :h, :w]
    y = (y * 127.5 + 127.5).clamp(0, 255).round()[0].permute(1, 2, 0).numpy().astype(np.uint8)
    return y[..., ::-1]


def test_translate_every_image_once_same_name_and_size(toy):
    model = load_translator(toy['cfg'], toy['ckpt'])
    out = str(toy['tmp'] / 'out')
    stats = translate_dataset(model, toy['src'], out, batch_size=2, num_workers=0, progress=False)
    assert stats == dict(total=6, existing=0, written=6, skipped=0, skipped_files=[])
    assert list_images(out) == toy['rels']
    for rel, (h, w) in toy['sizes'].items():
        got = cv2.imread(osp.join(out, rel))
        assert got.shape == (h, w, 3)
        diff = np.abs(got.astype(int) - expected_output(model, osp.join(toy['src'], rel)).astype(int))
        assert diff.max() <= 1, (rel, diff.max())  # batched vs single forward: rounding only
    assert np.abs(got.astype(int) - cv2.imread(osp.join(toy['src'], rel)).astype(int)).mean() > 5
    mtimes = {r: os.stat(osp.join(out, r)).st_mtime_ns for r in toy['rels']}
    again = translate_dataset(model, toy['src'], out, num_workers=2, progress=False)
    assert again['written'] == 0 and again['existing'] == 6
    assert mtimes == {r: os.stat(osp.join(out, r)).st_mtime_ns for r in toy['rels']}


def test_shards_split_the_set(toy):
    model = load_translator(toy['cfg'], toy['ckpt'])
    out = str(toy['tmp'] / 'out')
    written = [translate_dataset(model, toy['src'], out, shard_id=k, num_shards=4, num_workers=0,
                                 progress=False)['written'] for k in range(4)]
    assert written == [2, 2, 1, 1]
    assert list_images(out) == toy['rels']


def test_unreadable_image_raise_or_skip(toy):
    model = load_translator(toy['cfg'], toy['ckpt'])
    bad = osp.join(toy['src'], 'part0', '00002.png')
    with open(bad, 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(RuntimeError, match=r'cannot read image .*part0/00002.png'):
        translate_dataset(model, toy['src'], str(toy['tmp'] / 'a'), num_workers=0, progress=False)
    out = str(toy['tmp'] / 'b')
    stats = translate_dataset(model, toy['src'], out, on_error='skip', num_workers=0, progress=False)
    assert stats['written'] == 5 and stats['skipped_files'] == [bad]
    assert open(osp.join(out, 'skipped_images.txt')).read() == bad + '\n'
    assert not osp.exists(osp.join(out, 'part0', '00002.png'))
    with pytest.raises(ValueError, match='on_error'):
        translate_dataset(model, toy['src'], out, on_error='ignore')


def test_load_translator_checks_checkpoint(toy):
    model = load_translator(toy['cfg'])
    gens = {k: v for k, v in model.state_dict().items() if k.startswith('generators.')}
    path = str(toy['tmp'] / 'gens.pth')
    torch.save(gens, path)
    assert torch.equal(load_translator(toy['cfg'], path).state_dict()['generators.target.model.0.conv.weight'],
                       gens['generators.target.model.0.conv.weight'])
    gens.pop('generators.target.model.0.conv.weight')
    torch.save(gens, path)
    with pytest.raises(ValueError, match=r'does not fit.*missing \[\'generators.target.model.0.conv.weight'):
        load_translator(toy['cfg'], path)


KILLER = """
import os, runpy, signal, sys
real, count = os.replace, [0]
def replace(a, b):
    if str(a).endswith('.part'):
        count[0] += 1
        if count[0] == int(os.environ['KILL_AT_REPLACE']):  # killed after writing a temp file, before its rename
            os.kill(os.getpid(), signal.SIGKILL)
    return real(a, b)
os.replace = replace
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_tool_killed_and_rerun_finishes_without_rewriting(toy):
    out = str(toy['tmp'] / 'out')
    tool = osp.join(ROOT, 'tools/translate.py')
    args = [toy['cfg'], toy['ckpt'], '--src', toy['src'], '--out', out, '--device', 'cpu', '--no-progress',
            '--scale-width', '0']  # original resolution (the default is the config's ScaleWidth, 1024)
    env = dict(os.environ, OMP_NUM_THREADS='1', KILL_AT_REPLACE='4')
    killed = subprocess.run([sys.executable, '-c', KILLER, tool] + args + ['--num-workers', '0'], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = list_images(out)
    assert done == toy['rels'][:3]
    parts = [f for _, _, files in os.walk(out) for f in files if f.endswith('.part')]
    assert len(parts) == 1  # the 4th image was written to its temp file only
    mtimes = {r: os.stat(osp.join(out, r)).st_mtime_ns for r in done}
    env.pop('KILL_AT_REPLACE')
    rerun = subprocess.run([sys.executable, tool] + args + ['--batch-size', '2'], env=env, capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert '3 written, 3 already there' in rerun.stdout
    assert list_images(out) == toy['rels']
    assert mtimes == {r: os.stat(osp.join(out, r)).st_mtime_ns for r in done}
    assert not [f for _, _, files in os.walk(out) for f in files if not f.endswith('.png')]
    model = load_translator(toy['cfg'], toy['ckpt'])
    for rel in toy['rels']:
        diff = cv2.imread(osp.join(out, rel)).astype(int) - expected_output(model, osp.join(toy['src'], rel))
        assert np.abs(diff).max() <= 1
