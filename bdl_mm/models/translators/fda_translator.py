# Copyright (c) bdl_mm contributors.
"""FDA (Yang & Soatto, *FDA: Fourier Domain Adaptation for Semantic Segmentation*, CVPR 2020) as a translation
baseline: the low-frequency amplitude spectrum of each source image is replaced by that of a target image."""
import hashlib
from collections import OrderedDict
from typing import Sequence

import numpy as np
from mmagic.registry import MODELS
from PIL import Image

from .translation_baseline import TranslationBaseline, read_image

__all__ = ['FDATranslator', 'low_freq_band', 'fda_source_to_target']


def low_freq_band(height: int, width: int, beta: float):
    """Row and column indices (of the unshifted 2D FFT) of FDA's centred low-frequency square.

    The official ``low_freq_mutate_np`` replaces ``[c_h - b, c_h + b] x [c_w - b, c_w + b]`` of the
    ``fftshift``-ed amplitude, with ``b = floor(min(H, W) * beta)`` and ``c = floor(size / 2)``: a square of side
    ``2 b + 1`` around the zero frequency. ``fftshift`` moves index ``u`` to ``(u + size // 2) % size``, so the
    square is the signed frequencies ``-b .. b``, i.e. the unshifted indices ``(-b .. b) % size``.
    """
    b = int(np.floor(min(height, width) * beta))
    offsets = np.arange(-b, b + 1)
    return offsets % height, offsets % width


def fda_source_to_target(src: np.ndarray, trg: np.ndarray, beta: float) -> np.ndarray:
    """The official ``FDA_source_to_target_np`` on (H, W, C) arrays of the same size (any channel order): the
    source's phase with the source's amplitude, whose low-frequency square comes from the target. Returns float64
    (not clipped)."""
    if src.shape != trg.shape:
        raise ValueError(f'FDA: source and target must have the same shape, got {src.shape} and {trg.shape}')
    fft_src = np.fft.fft2(src.astype(np.float64), axes=(0, 1))
    amp_trg = np.abs(np.fft.fft2(trg.astype(np.float64), axes=(0, 1)))
    rows, cols = low_freq_band(src.shape[0], src.shape[1], beta)
    return _mutate(fft_src, amp_trg[np.ix_(rows, cols)], rows, cols)


def _mutate(fft_src: np.ndarray, amp_band: np.ndarray, rows, cols) -> np.ndarray:
    amp, pha = np.abs(fft_src), np.angle(fft_src)
    amp[np.ix_(rows, cols)] = amp_band
    return np.real(np.fft.ifft2(amp * np.exp(1j * pha), axes=(0, 1)))


def to_uint8(img: np.ndarray) -> np.ndarray:
    """As the official code saves its result (``scipy.misc.toimage(x, cmin=0, cmax=255)``): clip to [0, 255],
    round half up."""
    return np.floor(np.clip(img, 0, 255) + 0.5).astype(np.uint8)


@MODELS.register_module(name=['FDATranslator', 'FDA'])
class FDATranslator(TranslationBaseline):
    """FDA's amplitude swap, one random target image per source image (``type='FDA'`` or ``'FDATranslator'``).

    Each source image gets the low-frequency amplitude (a centred square of side ``2 floor(min(H, W) beta) + 1``
    of the shifted spectrum, per channel) of one target image, resized to the source's size first (PIL bicubic, as
    the official demo resizes both); the phase and the other frequencies are the source's. The result is clipped to
    [0, 255] and rounded as the official code saves it. The paper uses ``beta`` 0.01, 0.05 and 0.09 (one model each;
    their multi-band ensemble averages the three models' predictions).

    The target image of a source image is drawn by a seeded hash of its key (its path relative to the source
    folder): the same source image always gets the same target image, whatever the shard, process or run.

    Args:
        beta (float): size of the low-frequency square, in (0, 0.5]. Defaults to 0.01.
        seed (int): seed of the hash that draws the target image. Defaults to 0.
        cache_size (int): low-frequency squares of target images kept in memory (LRU). Defaults to 128.
    """

    def __init__(self, beta: float = 0.01, seed: int = 0, cache_size: int = 128):
        beta = float(beta)
        if not 0 < beta <= 0.5:
            raise ValueError(f'FDA: beta must be in (0, 0.5], got {beta}')
        super().__init__(beta=beta, seed=int(seed), cache_size=int(cache_size))
        self.beta, self.seed, self.cache_size = beta, int(seed), int(cache_size)
        self.target_paths = []
        self._cache = OrderedDict()

    def fit(self, target_paths: Sequence[str]) -> None:
        """FDA learns nothing: it keeps the (sorted) list of target images to draw from."""
        self.load_state_dict(dict(target_paths=sorted(str(p) for p in target_paths)))

    def state_dict(self) -> dict:
        return dict(target_paths=list(self.target_paths))

    def load_state_dict(self, state: dict) -> None:
        paths = list(state['target_paths'])
        if not paths:
            raise ValueError('FDA: no target images to draw the amplitude from')
        self.target_paths = paths
        self._cache.clear()
        self.fitted = True

    def target_index(self, key: str) -> int:
        """The target image drawn for the source image ``key``: sha256 of ``'<seed>:<key>'`` modulo the number of
        target images."""
        self._check_fitted()
        digest = hashlib.sha256(f'{self.seed}:{key}'.encode()).digest()
        return int.from_bytes(digest[:8], 'big') % len(self.target_paths)

    def _target_band(self, index: int, height: int, width: int) -> np.ndarray:
        cache_key = (index, height, width)
        band = self._cache.get(cache_key)
        if band is not None:
            self._cache.move_to_end(cache_key)
            return band
        trg = read_image(self.target_paths[index])
        if trg.shape[:2] != (height, width):
            trg = np.array(Image.fromarray(trg).resize((width, height), Image.BICUBIC))
        rows, cols = low_freq_band(height, width, self.beta)
        band = np.abs(np.fft.fft2(trg.astype(np.float64), axes=(0, 1)))[np.ix_(rows, cols)]
        self._cache[cache_key] = band
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return band

    def translate(self, img: np.ndarray, key: str) -> np.ndarray:
        h, w = img.shape[:2]
        band = self._target_band(self.target_index(key), h, w)
        rows, cols = low_freq_band(h, w, self.beta)
        return to_uint8(_mutate(np.fft.fft2(img.astype(np.float64), axes=(0, 1)), band, rows, cols))
