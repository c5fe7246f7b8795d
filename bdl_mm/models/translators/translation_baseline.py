# Copyright (c) bdl_mm contributors.
"""Translation baselines: fixed image-to-image maps that take F's place in Algorithm 1 without training.

A baseline is selected in the translation stage's settings, ``train_cfg.stages.translation = dict(type='FDA',
beta=0.01)`` (the other keys are its constructor arguments), and registered in MMagic's ``MODELS`` like F. The
translation stage fits it once on the target images (:meth:`TranslationBaseline.fit`: no gradient, e.g. colour
statistics) and records the result in ``<stage>/translator.json`` (:meth:`to_record`); the translate stage rebuilds
it from that file (:func:`baseline_from_record`) and maps every source image on its own
(:meth:`TranslationBaseline.translate`), deterministically: the same image (named by its path relative to the
source folder) always gives the same output, whatever the shard or the run.
"""
import copy
from typing import List, Optional, Sequence

import mmcv
import numpy as np
from mmagic.registry import MODELS

__all__ = [
    'TranslationBaseline', 'baseline_types', 'baseline_class', 'build_baseline', 'baseline_from_record', 'read_image'
]


def read_image(path: str) -> np.ndarray:
    """An image file as BGR uint8 (H, W, 3); one error naming the file if it cannot be read."""
    try:
        img = mmcv.imread(path, flag='color', channel_order='bgr')
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f'cannot read image {path} ({type(e).__name__}: {e})') from e
    if img is None:
        raise ValueError(f'cannot read image {path} (not a decodable image)')
    return img


class TranslationBaseline:
    """Base class of the translation baselines (see the module docstring).

    Subclasses keep their constructor arguments in ``self.settings`` (recorded with the fitted state) and
    implement :meth:`fit`, :meth:`translate`, :meth:`state_dict` and :meth:`load_state_dict`.
    """

    def __init__(self, **settings):
        self.settings = settings
        self.fitted = False

    def fit(self, target_paths: Sequence[str]) -> None:
        """Fit on the target images (paths); called once, by the translation stage."""
        raise NotImplementedError

    def translate(self, img: np.ndarray, key: str) -> np.ndarray:
        """Map one BGR uint8 (H, W, 3) source image to a BGR uint8 image of the same size. ``key`` names the image
        (its path relative to the source folder): baselines that draw anything draw it from ``key``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The fitted state, JSON-serialisable."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def _check_fitted(self):
        if not self.fitted:
            raise RuntimeError(f'{type(self).__name__}: call fit(target image paths) or load_state_dict first')

    def to_record(self) -> dict:
        """What the translation stage writes to ``translator.json``: type, settings and fitted state."""
        self._check_fitted()
        return dict(type=type(self).__name__, settings=copy.deepcopy(self.settings), state=self.state_dict())


def baseline_types() -> List[str]:
    """Names (and aliases) of the registered translation baselines, sorted."""
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if isinstance(cls, type) and issubclass(cls, TranslationBaseline))


def baseline_class(type_name) -> Optional[type]:
    if isinstance(type_name, type):
        return type_name if issubclass(type_name, TranslationBaseline) else None
    name = str(type_name)
    name = name.split('.', 1)[1] if name.startswith('mmagic.') else name
    cls = MODELS.module_dict.get(name)
    return cls if isinstance(cls, type) and issubclass(cls, TranslationBaseline) else None


def build_baseline(cfg: dict) -> TranslationBaseline:
    """Build a baseline from ``dict(type=..., **settings)``; an unknown type fails naming the known ones."""
    cfg = dict(cfg)
    type_name = cfg.pop('type', None)
    cls = baseline_class(type_name)
    if cls is None:
        raise KeyError(f'unknown translation baseline {type_name!r}; known: {", ".join(baseline_types())}')
    return cls(**cfg)


def baseline_from_record(record: dict) -> TranslationBaseline:
    """The fitted baseline of a :meth:`TranslationBaseline.to_record` record (``translator.json``)."""
    baseline = build_baseline(dict(record['settings'], type=record['type']))
    baseline.load_state_dict(record['state'])
    return baseline
