"""pytorch-CycleGAN's ``scale_width``: the resizing of F's training and translation images in the BDL release."""
from typing import Sequence, Union

import numpy as np
from mmagic.registry import TRANSFORMS
from mmcv.transforms import BaseTransform
from PIL import Image

PIL_METHODS = dict(bicubic=Image.BICUBIC, bilinear=Image.BILINEAR, nearest=Image.NEAREST)


def scale_width(img: np.ndarray, width: int, interpolation: str = 'bicubic') -> np.ndarray:
    """Resize an (H, W[, C]) uint8 array to ``width`` columns and ``int(width * H / W)`` rows with PIL.

    Exactly pytorch-CycleGAN's ``__scale_width`` (``--resize_or_crop scale_width[_and_crop]``, used by the BDL
    release to train F and to translate the source): the height is truncated, not rounded (GTA5 1914x1052 ->
    1024x562, where mmcv's ``imrescale`` gives 1024x563), and an image of that width is returned unchanged.
    PIL resizes each channel independently, so BGR and RGB arrays give the same pixels.
    """
    h, w = img.shape[:2]
    if w == width:
        return img
    if img.dtype != np.uint8:
        raise TypeError(f'scale_width: expected a uint8 image, got {img.dtype}')
    size = (width, int(width * h / w))
    return np.array(Image.fromarray(img).resize(size, PIL_METHODS[interpolation]))  # writable (cv2 flips in place)


@TRANSFORMS.register_module()
class ScaleWidth(BaseTransform):
    """Resize the images of ``keys`` to a fixed width, keeping the aspect ratio as pytorch-CycleGAN does.

    Written here because MMagic's ``Resize`` (``keep_ratio=True``) rounds the other side (mmcv ``imrescale``)
    where the release truncates it; see :func:`scale_width`.

    Args:
        keys (str | Sequence[str]): image keys of the results dict.
        width (int): target width (release: ``--loadSize 1024``).
        interpolation (str): PIL method, ``'bicubic'`` in the release.
    """

    def __init__(self, keys: Union[str, Sequence[str]], width: int, interpolation: str = 'bicubic'):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not isinstance(width, int) or width < 1:
            raise ValueError(f'ScaleWidth: width must be a positive int, got {width!r}')
        if interpolation not in PIL_METHODS:
            raise ValueError(f'ScaleWidth: interpolation must be one of {sorted(PIL_METHODS)}, got {interpolation!r}')
        self.width, self.interpolation = width, interpolation

    def transform(self, results: dict) -> dict:
        for key in self.keys:
            results[key] = scale_width(results[key], self.width, self.interpolation)
            results[f'{key}_shape'] = results[key].shape[:2]
        return results

    def __repr__(self):
        return f'{type(self).__name__}(keys={self.keys}, width={self.width}, interpolation={self.interpolation!r})'
