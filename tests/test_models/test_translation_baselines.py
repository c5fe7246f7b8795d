"""Translation baselines in F's place: FDA against a direct port of the official ``FDA_source_to_target_np`` and a
closed form, its seeded per-image target draw, Reinhard's streaming statistics and transfer, the registry."""
import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from bdl_mm.models.translators import (
    FDATranslator,
    ReinhardColourTransfer,
    baseline_from_record,
    baseline_types,
    build_baseline,
)
from bdl_mm.models.translators.colour_transfer import bgr_to_lalphabeta, lalphabeta_to_bgr, merge_moments
from bdl_mm.models.translators.fda_translator import fda_source_to_target


def official_fda_np(src_chw, trg_chw, L):
    """FDA's official numpy code (utils/__init__.py: low_freq_mutate_np + FDA_source_to_target_np), on C, H, W."""
    fft_src = np.fft.fft2(src_chw, axes=(-2, -1))
    fft_trg = np.fft.fft2(trg_chw, axes=(-2, -1))
    amp_src, pha_src = np.abs(fft_src), np.angle(fft_src)
    amp_trg = np.abs(fft_trg)
    a_src = np.fft.fftshift(amp_src, axes=(-2, -1))
    a_trg = np.fft.fftshift(amp_trg, axes=(-2, -1))
    _, h, w = a_src.shape
    b = np.floor(np.amin((h, w)) * L).astype(int)
    c_h, c_w = np.floor(h / 2.0).astype(int), np.floor(w / 2.0).astype(int)
    a_src[:, c_h - b:c_h + b + 1, c_w - b:c_w + b + 1] = a_trg[:, c_h - b:c_h + b + 1, c_w - b:c_w + b + 1]
    amp_src_ = np.fft.ifftshift(a_src, axes=(-2, -1))
    return np.real(np.fft.ifft2(amp_src_ * np.exp(1j * pha_src), axes=(-2, -1)))


def write(path, img):
    assert cv2.imwrite(str(path), img)
    return str(path)


@pytest.mark.parametrize('shape, beta', [((9, 12), 0.2), ((24, 16), 0.09), ((20, 30), 0.5), ((7, 7), 0.3)])
def test_fda_equals_the_official_code(shape, beta):
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (*shape, 3)).astype(np.float64)
    trg = rng.integers(0, 256, (*shape, 3)).astype(np.float64)
    ours = fda_source_to_target(src, trg, beta)
    ref = official_fda_np(src.transpose(2, 0, 1), trg.transpose(2, 0, 1), beta).transpose(1, 2, 0)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    b = int(np.floor(min(shape) * beta))
    assert b >= 1 and np.abs(ours - src).max() > 1  # the band is not empty: the image changed


def test_fda_dc_only_is_a_mean_shift():
    """With b = 0 only the zero frequency moves: each channel's mean becomes the target's, nothing else changes."""
    rng = np.random.default_rng(1)
    src = rng.integers(40, 200, (10, 14, 3)).astype(np.uint8)
    trg = rng.integers(0, 120, (10, 14, 3)).astype(np.uint8)
    out = fda_source_to_target(src, trg, beta=0.05)  # floor(10 * 0.05) = 0
    expected = src - src.mean(axis=(0, 1)) + trg.mean(axis=(0, 1))
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_fda_translator_draws_one_target_per_image_deterministically(tmp_path):
    rng = np.random.default_rng(2)
    targets = [write(tmp_path / f't{i}.png', rng.integers(0, 256, (8 + i, 10 + 2 * i, 3)).astype(np.uint8))
               for i in range(5)]
    fda = build_baseline(dict(type='FDA', beta=0.2, seed=3))
    assert isinstance(fda, FDATranslator)
    fda.fit(reversed(targets))
    assert fda.target_paths == sorted(targets)
    keys = [f'city/{i:05d}.png' for i in range(40)]
    drawn = [fda.target_index(k) for k in keys]
    # sha256('<seed>:<key>') modulo the number of targets, computed independently
    assert drawn == [int(hashlib.sha256(f'3:{k}'.encode()).hexdigest()[:16], 16) % 5 for k in keys]
    assert len(set(drawn)) == 5
    src = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    out = fda.translate(src, keys[0])
    # the drawn target, resized to the source's size with PIL bicubic, then the official code, clipped and rounded
    trg = np.array(Image.fromarray(cv2.imread(fda.target_paths[drawn[0]])).resize((16, 12), Image.BICUBIC))
    ref = official_fda_np(src.transpose(2, 0, 1).astype(float), trg.transpose(2, 0, 1).astype(float), 0.2)
    np.testing.assert_array_equal(out, np.floor(np.clip(ref.transpose(1, 2, 0), 0, 255) + 0.5).astype(np.uint8))
    assert out.dtype == np.uint8 and out.shape == src.shape and not np.array_equal(out, src)
    # the same image gives the same output, also from a fresh instance rebuilt from the record (another process)
    again = baseline_from_record(fda.to_record())
    np.testing.assert_array_equal(again.translate(src, keys[0]), out)
    np.testing.assert_array_equal(fda.translate(src, keys[0]), out)  # from the cache
    other_seed = FDATranslator(beta=0.2, seed=4)
    other_seed.fit(targets)
    assert [other_seed.target_index(k) for k in keys] != drawn


def test_fda_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match='beta must be in'):
        FDATranslator(beta=0.7)
    with pytest.raises(RuntimeError, match='call fit'):
        FDATranslator().translate(np.zeros((4, 4, 3), np.uint8), 'a.png')
    with pytest.raises(ValueError, match='no target images'):
        FDATranslator().fit([])
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not a png')
    fda = FDATranslator(beta=0.1)
    fda.fit([str(bad)])
    with pytest.raises(ValueError, match='cannot read image .*bad.png'):
        fda.translate(np.zeros((8, 8, 3), np.uint8), 'a.png')


def test_merge_moments_streams_exactly():
    rng = np.random.default_rng(3)
    parts = [rng.normal(5 * i, 1 + i, (rng.integers(10, 50), 3)) for i in range(6)]
    total = (0, np.zeros(3), np.zeros(3))
    for p in parts:
        total = merge_moments(total, (len(p), p.mean(0), ((p - p.mean(0))**2).sum(0)))
    allp = np.concatenate(parts)
    assert total[0] == len(allp)
    np.testing.assert_allclose(total[1], allp.mean(0), rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(total[2] / total[0]), allp.std(0), rtol=1e-12)


def test_lalphabeta_round_trip():
    rng = np.random.default_rng(4)
    img = rng.integers(8, 256, (20, 20, 3)).astype(np.uint8)
    lab = bgr_to_lalphabeta(img)
    np.testing.assert_allclose(lalphabeta_to_bgr(lab), img, atol=1e-9)
    # l is the (scaled) sum of the log LMS: a grey pixel has alpha = beta = 0 up to the matrix's rounding
    grey = bgr_to_lalphabeta(np.full((1, 1, 3), 128, np.uint8))[0, 0]
    assert abs(grey[1]) < 2e-3 and abs(grey[2]) < 2e-3


@pytest.mark.parametrize('space', ['rgb', 'lalphabeta'])
def test_reinhard_fits_the_target_set_and_transfers_its_statistics(space, tmp_path):
    rng = np.random.default_rng(5)
    targets = [rng.normal((90, 120, 150), (20, 25, 30), (10 + 3 * i, 14, 3)).clip(0, 255).astype(np.uint8)
               for i in range(4)]
    paths = [write(tmp_path / f't{i}.png', t) for i, t in enumerate(targets)]
    model = build_baseline(dict(type='Reinhard', colour_space=space))
    assert isinstance(model, ReinhardColourTransfer)
    model.fit(paths)
    values = np.concatenate([model.to_space(t).reshape(-1, 3) for t in targets])
    np.testing.assert_allclose(model.mean, values.mean(0), rtol=1e-10)
    np.testing.assert_allclose(model.std, values.std(0), rtol=1e-10)
    assert model.num_images == 4 and model.num_pixels == len(values)
    src = rng.normal((160, 80, 60), (30, 15, 10), (24, 32, 3)).clip(0, 255).astype(np.uint8)
    out = model.translate(src, 'any.png')
    assert out.dtype == np.uint8 and out.shape == src.shape
    got = model.to_space(out).reshape(-1, 3)
    np.testing.assert_allclose(got.mean(0), model.mean, atol=0.6 if space == 'rgb' else 0.01)
    np.testing.assert_allclose(got.std(0), model.std, rtol=0.05)
    np.testing.assert_array_equal(baseline_from_record(model.to_record()).translate(src, 'other.png'), out)
    if space == 'rgb':  # per channel, exactly: (x - mu_s) / sd_s * sd_t + mu_t
        x = src.astype(float)
        ref = (x - x.mean((0, 1))) / x.std((0, 1)) * model.std + model.mean
        np.testing.assert_array_equal(out, np.floor(np.clip(ref, 0, 255) + 0.5).astype(np.uint8))


def test_registry_names_and_unknown_type():
    assert {'FDA', 'FDATranslator', 'Reinhard', 'ReinhardColourTransfer'} <= set(baseline_types())
    assert type(build_baseline(dict(type='mmagic.FDATranslator'))) is FDATranslator
    with pytest.raises(KeyError, match="unknown translation baseline 'CycleGAN'"):
        build_baseline(dict(type='CycleGAN'))
