# Copyright (c) bdl_mm contributors.
"""Colour-statistics transfer (Reinhard, Ashikhmin, Gooch, Shirley, *Color Transfer between Images*, IEEE CG&A
2001) as a translation baseline: each source image gets the per-channel mean and standard deviation of the whole
target set."""
from typing import Sequence, Tuple

import numpy as np
from mmagic.registry import MODELS

from .translation_baseline import TranslationBaseline, read_image

__all__ = ['ReinhardColourTransfer', 'bgr_to_lalphabeta', 'lalphabeta_to_bgr', 'merge_moments']

# Reinhard et al. (2001), Eq. 4 (RGB -> LMS) and Eq. 6 (log LMS -> l alpha beta)
RGB_TO_LMS = np.array([[0.3811, 0.5783, 0.0402], [0.1967, 0.7244, 0.0782], [0.0241, 0.1288, 0.8444]])
LOG_LMS_TO_LAB = np.diag([1 / np.sqrt(3), 1 / np.sqrt(6), 1 / np.sqrt(2)]) @ np.array([[1, 1, 1], [1, 1, -2],
                                                                                         [1, -1, 0]])
LMS_TO_RGB = np.linalg.inv(RGB_TO_LMS)  # the paper prints this inverse rounded to 4 digits
LAB_TO_LOG_LMS = np.linalg.inv(LOG_LMS_TO_LAB)
LMS_FLOOR = 1 / 255  # log10 needs LMS > 0: values below one grey level (black pixels) are raised to it
COLOUR_SPACES = ('lalphabeta', 'rgb')


def bgr_to_lalphabeta(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR 0-255 -> Reinhard's l alpha beta (float64): RGB in [0, 1] -> LMS -> log10 -> decorrelated."""
    rgb = img[..., ::-1].astype(np.float64) / 255
    lms = np.maximum(rgb @ RGB_TO_LMS.T, LMS_FLOOR)
    return np.log10(lms) @ LOG_LMS_TO_LAB.T


def lalphabeta_to_bgr(lab: np.ndarray) -> np.ndarray:
    """The inverse of :func:`bgr_to_lalphabeta` (float64 BGR 0-255, not clipped)."""
    rgb = (10**(lab @ LAB_TO_LOG_LMS.T)) @ LMS_TO_RGB.T
    return rgb[..., ::-1] * 255


def merge_moments(a: Tuple[int, np.ndarray, np.ndarray], b: Tuple[int, np.ndarray, np.ndarray]):
    """Chan et al.'s pairwise update: ``(count, mean, M2)`` of two pixel sets -> of their union (M2: sum of the
    squared deviations from the mean), numerically stable over billions of pixels."""
    n_a, mean_a, m2_a = a
    n_b, mean_b, m2_b = b
    n = n_a + n_b
    if n == 0:
        return a
    delta = mean_b - mean_a
    return n, mean_a + delta * (n_b / n), m2_a + m2_b + delta**2 * (n_a * n_b / n)


@MODELS.register_module(name=['ReinhardColourTransfer', 'Reinhard'])
class ReinhardColourTransfer(TranslationBaseline):
    """Reinhard's colour transfer to the target set's statistics (``type='Reinhard'`` or
    ``'ReinhardColourTransfer'``).

    ``fit`` computes the per-channel mean and standard deviation (population) of every pixel of every target image,
    streaming (one image in memory at a time; Chan et al.'s update). ``translate`` normalises each source image by
    its own per-channel mean and standard deviation and gives it the target set's: ``(x - mu_s) / sd_s * sd_t +
    mu_t`` per channel, then clips and rounds to uint8. Deterministic: nothing is drawn.

    Args:
        colour_space (str): ``'lalphabeta'`` (default, the paper's decorrelated l alpha beta space: RGB -> LMS ->
            log10 -> l alpha beta) or ``'rgb'`` (the image's own channels).
    """

    def __init__(self, colour_space: str = 'lalphabeta'):
        if colour_space not in COLOUR_SPACES:
            raise ValueError(f'Reinhard: colour_space must be one of {COLOUR_SPACES}, got {colour_space!r}')
        super().__init__(colour_space=colour_space)
        self.colour_space = colour_space
        self.mean = self.std = None
        self.num_images = self.num_pixels = 0

    def to_space(self, img: np.ndarray) -> np.ndarray:
        return bgr_to_lalphabeta(img) if self.colour_space == 'lalphabeta' else img.astype(np.float64)

    def from_space(self, values: np.ndarray) -> np.ndarray:
        return lalphabeta_to_bgr(values) if self.colour_space == 'lalphabeta' else values

    @staticmethod
    def moments(values: np.ndarray):
        """``(count, mean, M2)`` per channel of an (H, W, 3) array."""
        flat = values.reshape(-1, values.shape[-1])
        mean = flat.mean(axis=0)
        return flat.shape[0], mean, ((flat - mean)**2).sum(axis=0)

    def fit(self, target_paths: Sequence[str]) -> None:
        paths = list(target_paths)
        if not paths:
            raise ValueError('Reinhard: no target images to compute the statistics of')
        total = (0, np.zeros(3), np.zeros(3))
        for path in paths:
            total = merge_moments(total, self.moments(self.to_space(read_image(path))))
        n, mean, m2 = total
        self.load_state_dict(dict(mean=mean.tolist(), std=np.sqrt(m2 / n).tolist(), num_images=len(paths),
                                  num_pixels=int(n)))

    def state_dict(self) -> dict:
        return dict(mean=[float(v) for v in self.mean], std=[float(v) for v in self.std], num_images=self.num_images,
                    num_pixels=self.num_pixels)

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.std = np.asarray(state['mean'], np.float64), np.asarray(state['std'], np.float64)
        if self.mean.shape != (3, ) or self.std.shape != (3, ):
            raise ValueError(f'Reinhard: mean and std must have 3 values, got {state["mean"]} and {state["std"]}')
        self.num_images, self.num_pixels = int(state.get('num_images', 0)), int(state.get('num_pixels', 0))
        self.fitted = True

    def translate(self, img: np.ndarray, key: str) -> np.ndarray:
        self._check_fitted()
        values = self.to_space(img)
        _, mean, m2 = self.moments(values)
        std = np.sqrt(m2 / (values.size // values.shape[-1]))
        out = (values - mean) * (self.std / np.maximum(std, 1e-6)) + self.mean
        bgr = np.nan_to_num(self.from_space(out), nan=0.0, posinf=255.0, neginf=0.0)
        return np.floor(np.clip(bgr, 0, 255) + 0.5).astype(np.uint8)
