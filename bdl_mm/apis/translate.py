# Copyright (c) bdl_mm contributors.
"""Translate a whole source data set with the generator of F (S' = F(S) in Algorithm 1), or with a translation
baseline (FDA, colour transfer: :mod:`bdl_mm.models.translators.translation_baseline`) in F's place."""
import copy
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmagic.registry import MODELS
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import DefaultScope
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..datasets.transforms.scale_width import scale_width as _scale_width
from ..models.translators.translation_baseline import TranslationBaseline
from ..utils.atomic_io import atomic_write_bytes, remove_stale_tmp
from ..utils.weights import checkpoint_weights

__all__ = ['load_translator', 'translate_dataset', 'list_images', 'training_width']

PER_KEYS = ('segmentor', 'seg_input', 'perceptual_loss')


def load_translator(config: Union[str, Config, dict], checkpoint: Optional[str] = None,
                    device: Union[str, torch.device] = 'cpu') -> nn.Module:
    """Build the translation model of a config (without its segmentor M: not needed to translate), load weights.

    Args:
        config: path to a translation config, a :class:`Config`, or the config's ``model`` dict.
        checkpoint: F checkpoint (mmengine runner checkpoint or ``tools/model_converters/cyclegan_pytorch.py``
            output). Every generator weight must be there with its shape and no unknown key may be (the
            discriminators may be absent). ``None`` keeps the initial weights.
        device: where to put the model.

    Returns:
        The model (an MMagic translation model, e.g. ``PerceptualCycleGAN``) in eval mode.
    """
    if isinstance(config, str):
        config = Config.fromfile(config)
    model_cfg = copy.deepcopy(config['model'] if 'model' in config else config)
    if 'PerceptualCycleGAN' in str(model_cfg.get('type', '')):
        for key in PER_KEYS:
            model_cfg.pop(key, None)
        model_cfg['perceptual_loss'] = None
    with DefaultScope.overwrite_default_scope('mmagic'):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        state = checkpoint_weights(checkpoint)
        own = model.state_dict()
        # The discriminators are not needed to translate: a generators-only checkpoint is fine.
        missing = [k for k in own if k not in state and not k.startswith('discriminators.')]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(f'F checkpoint {checkpoint} does not fit the config\'s model: missing {missing[:4]}, '
                             f'unexpected {unexpected[:4]}, shape mismatch {wrong[:4]}')
        model.load_state_dict(state, strict=False)
    return model.to(device).eval()


def training_width(config: Union[str, Config, dict]) -> Optional[int]:
    """The width F's training pipeline scales images to (its ``ScaleWidth``), or None: the scale at which the
    release translates the source (pytorch-CycleGAN's test with ``--resize_or_crop scale_width``)."""
    if isinstance(config, str):
        config = Config.fromfile(config)
    dataset = (config.get('train_dataloader') or {}).get('dataset') or {}
    for step in dataset.get('pipeline') or []:
        if str(step.get('type', '')).split('.')[-1] == 'ScaleWidth':
            return int(step['width'])
    return None


def list_images(root: str, img_suffix: Union[str, Sequence[str]] = '.png') -> List[str]:
    """Sorted paths, relative to ``root``, of the files under ``root`` (recursive) ending with ``img_suffix``."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'translate: source folder {root} does not exist')
    suffix = (img_suffix, ) if isinstance(img_suffix, str) else tuple(img_suffix)
    rels = []
    for dirpath, _, files in os.walk(root, followlinks=True):
        for name in files:
            if name.endswith(suffix) and not name.startswith('.'):
                rels.append(osp.relpath(osp.join(dirpath, name), root))
    return sorted(rels)


def _first(batch):
    return batch[0]


class _ImageReader(Dataset):
    """Decodes the images to translate (BGR uint8), optionally scaled to a width as pytorch-CycleGAN's test does;
    failures are returned, not raised, so they can be skipped."""

    def __init__(self, paths: Sequence[str], width: Optional[int] = None):
        self.paths = list(paths)
        self.width = width

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, idx):
        path = self.paths[idx]
        try:
            with open(path, 'rb') as f:
                img = mmcv.imfrombytes(f.read(), flag='color', channel_order='bgr')
            if img is None:
                raise ValueError('not a decodable image')
            if self.width is not None:
                img = _scale_width(img, self.width)
            return idx, img, None
        except Exception as e:  # noqa: BLE001 - reported by name by the caller
            return idx, None, f'{type(e).__name__}: {e}'


def _resolve_generator(model: nn.Module, target_domain: Optional[str], mean, std, channel_order):
    """The generator to run and the generator's pixel normalisation (mean, std, channel order)."""
    if is_model_wrapper(model):
        model = model.module
    generators = getattr(model, 'generators', None)
    if generators is not None:
        if is_model_wrapper(generators):
            generators = generators.module
        domain = target_domain or model._default_domain
        if domain not in generators:
            raise KeyError(f'translate: target domain {domain!r} not in the model\'s domains {list(generators)}')
        generator = generators[domain]
        dp = model.data_preprocessor
        if getattr(dp, '_enable_normalize', False):
            mean = dp.mean.flatten().tolist() if mean is None else mean
            std = dp.std.flatten().tolist() if std is None else std
        channel_order = channel_order or getattr(dp, 'output_channel_order', None) or 'BGR'
    else:
        if target_domain is not None:
            raise ValueError('translate: target_domain needs a translation model, got a bare generator')
        generator = model
        channel_order = channel_order or 'RGB'  # pytorch-CycleGAN convention
    mean = [127.5] if mean is None else list(np.atleast_1d(mean).astype(float))
    std = [127.5] if std is None else list(np.atleast_1d(std).astype(float))
    if channel_order.upper() not in ('RGB', 'BGR'):
        raise ValueError(f"translate: channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    return generator, mean, std, channel_order.upper()


def _generator_fn(model: nn.Module, target_domain, mean, std, channel_order, scale, pad_size_divisor):
    """F's generator as a function of a batch ``[(index, BGR uint8 image), ...]`` of equal-size images -> BGR uint8
    images, and the function that restores the generator's mode afterwards."""
    generator, mean, std, order = _resolve_generator(model, target_domain, mean, std, channel_order)
    device = next(generator.parameters()).device
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    was_training = generator.training
    generator.eval()  # IN without running stats and no dropout: eval == train (MMagic's test trick not needed)

    def convert(batch: List[tuple]) -> np.ndarray:
        imgs = torch.from_numpy(np.stack([b[1] for b in batch])).to(device)  # N, H, W, 3 BGR uint8
        x = imgs.permute(0, 3, 1, 2).float()
        if order == 'RGB':
            x = x.flip(1)
        x = (x - mean_t) / std_t
        h, w = x.shape[-2:]
        if scale:
            factor = scale / max(h, w)
            x = F.interpolate(x, size=(round(h * factor), round(w * factor)), mode='bicubic', align_corners=False)
        sh, sw = x.shape[-2:]
        ph, pw = (-sh) % pad_size_divisor, (-sw) % pad_size_divisor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode='reflect')
        with torch.no_grad():
            y = generator(x)[..., :sh, :sw]
        if (sh, sw) != (h, w):
            y = F.interpolate(y, size=(h, w), mode='bicubic', align_corners=False)
        y = (y * std_t + mean_t).clamp(0, 255).round()
        if order == 'RGB':
            y = y.flip(1)
        return y.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()

    return convert, lambda: generator.train(was_training)


def translate_dataset(model: Union[nn.Module, TranslationBaseline],
                      src: Union[str, Sequence[str]],
                      out_dir: str,
                      *,
                      src_root: Optional[str] = None,
                      img_suffix: Union[str, Sequence[str]] = '.png',
                      target_domain: Optional[str] = None,
                      batch_size: int = 1,
                      num_workers: int = 2,
                      shard_id: Optional[int] = None,
                      num_shards: Optional[int] = None,
                      on_error: str = 'raise',
                      overwrite: bool = False,
                      scale: Optional[int] = None,
                      scale_width: Optional[int] = None,
                      pad_size_divisor: int = 4,
                      mean: Optional[Sequence[float]] = None,
                      std: Optional[Sequence[float]] = None,
                      channel_order: Optional[str] = None,
                      resize_output: Optional[Tuple[int, int]] = None,
                      progress: bool = True) -> Dict[str, object]:
    """Translate every image of a source set with F's generator into ``out_dir``, keeping names.

    Output policy: ``out_dir/<path relative to the source root>``, same file name and extension (so the
    source's labels and the dataset's ``img_suffix`` still match). The image is reflect-padded to a multiple of
    ``pad_size_divisor`` (the ResNet generator downsamples by 4) and the output cropped back, so pixels stay
    aligned with the labels. Resolution:

    - ``scale_width`` (the release, e.g. 1024, F's training scale): each image is first resized with PIL bicubic
      to that width and ``int(width * H / W)`` rows (pytorch-CycleGAN's ``scale_width`` test) and the result is
      saved at that size (GTA5: 1024x562); M's pipeline resizes it like any source image, the labels keep theirs;
    - ``scale`` (e.g. 1024): translated at that long edge (torch bicubic) and resized back to the input's size;
    - neither (default): translated at the original resolution.

    ``resize_output`` (W, H): each translated image is resized to that size before it is written, by the call M's
    pipelines make (``mmcv.imresize``, PIL bicubic): ``Resize(scale=(W, H), keep_ratio=False, backend='pillow',
    interpolation='bicubic')`` then loads it unchanged (ledger row 21's B(S), :func:`~bdl_mm.engine.prealign.
    ssl_baseline_size`).

    The job is resumable and shardable: an existing output is a finished file (writes are atomic: a hidden
    ``.<name>.<pid>.part`` in the same folder, then ``os.replace``) and is skipped unless ``overwrite``; shard
    ``shard_id`` of ``num_shards`` takes every ``num_shards``-th file of the sorted list (default: the
    torch.distributed rank and world size, else the whole set). Images of equal size are batched together.

    Args:
        model: a translation model (MMagic ``CycleGAN``/``PerceptualCycleGAN``: the generator of
            ``target_domain``, default the model's default domain, with its data preprocessor's normalisation)
            or a bare generator (``mean``/``std`` default 127.5 and ``channel_order`` 'RGB'); or a fitted
            :class:`~bdl_mm.models.translators.TranslationBaseline` (FDA, colour transfer), applied image by image
            (``model.translate(image, key)``, ``key`` the image's path relative to ``src_root``; ``scale``,
            ``target_domain``, ``mean``, ``std``, ``channel_order``, ``pad_size_divisor`` and ``batch_size`` do
            not apply).
        src: the source folder (scanned recursively for ``img_suffix``) or a list of image paths.
        out_dir: output folder.
        src_root: root the output paths are made relative to (default: ``src`` if a folder, else the common
            folder of the listed paths).
        on_error: ``'raise'`` (default) stops at the first unreadable image, naming it; ``'skip'`` logs each
            unreadable image by name, goes on, and writes their paths to ``out_dir/skipped_images*.txt``.

    Returns:
        dict with ``total`` (files of this shard), ``existing`` (already done), ``written``, ``skipped`` and
        ``skipped_files``.
    """
    if scale is not None and scale_width is not None:
        raise ValueError('translate: give scale or scale_width, not both')
    if on_error not in ('raise', 'skip'):
        raise ValueError(f"translate: on_error must be 'raise' or 'skip', got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f'translate: batch_size must be >= 1, got {batch_size}')
    if isinstance(src, str):
        src_root = src if src_root is None else src_root
        rels = list_images(src, img_suffix)
        if src_root != src:
            rels = [osp.relpath(osp.join(src, r), src_root) for r in rels]
    else:
        paths = [str(p) for p in src]
        if src_root is None:
            src_root = osp.commonpath([osp.abspath(osp.dirname(p)) for p in paths]) if paths else '.'
        rels = sorted(osp.relpath(p, src_root) for p in paths)
    if any(r.startswith('..') for r in rels):
        raise ValueError(f'translate: all source images must lie under src_root {src_root}')

    if num_shards is None and shard_id is not None:
        raise ValueError('translate: shard_id needs num_shards')
    if num_shards is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shard_id, num_shards = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            shard_id, num_shards = 0, 1
    shard_id = 0 if shard_id is None else shard_id
    if not 0 <= shard_id < num_shards:
        raise ValueError(f'translate: shard_id {shard_id} not in [0, {num_shards})')
    rels = rels[shard_id::num_shards]

    outs = [osp.join(out_dir, r) for r in rels]
    todo = [i for i, o in enumerate(outs) if overwrite or not osp.exists(o)]
    for i in todo:  # leftovers of a run killed between write and rename
        remove_stale_tmp(outs[i])
    stats = dict(total=len(rels), existing=len(rels) - len(todo), written=0, skipped=0, skipped_files=[])
    if not todo:
        return stats

    if isinstance(model, TranslationBaseline):
        if scale is not None or target_domain is not None:
            raise ValueError('translate: scale and target_domain apply to a generator, not to a baseline')
        batch_size = 1

        def convert(batch: List[tuple]) -> List[np.ndarray]:
            return [model.translate(img, rels[i]) for i, img in batch]  # keyed by the path under src_root

        restore = None
    else:
        convert, restore = _generator_fn(model, target_domain, mean, std, channel_order, scale, pad_size_divisor)

    def run(batch: List[tuple]) -> None:
        for (i, _), img in zip(batch, convert(batch)):
            if resize_output is not None and img.shape[1::-1] != tuple(resize_output):
                img = mmcv.imresize(img, tuple(resize_output), interpolation='bicubic', backend='pillow')
            ok, buf = cv2.imencode(osp.splitext(outs[i])[1] or '.png', img)
            if not ok:
                raise RuntimeError(f'translate: cannot encode {outs[i]}')
            os.makedirs(osp.dirname(outs[i]) or '.', exist_ok=True)
            atomic_write_bytes(outs[i], buf.tobytes())
            stats['written'] += 1

    reader = _ImageReader([osp.join(src_root, rels[i]) for i in todo], width=scale_width)
    loader = DataLoader(reader, batch_size=1, num_workers=num_workers, collate_fn=_first)
    buckets: Dict[tuple, List[tuple]] = {}
    bar = tqdm(total=len(todo), desc=f'translate shard {shard_id}/{num_shards}', disable=not progress)
    try:
        for j, img, err in loader:
            i = todo[j]
            if img is None:
                name = osp.join(src_root, rels[i])
                if on_error == 'raise':
                    raise RuntimeError(f'translate: cannot read image {name} ({err}); '
                                       "use on_error='skip' (--on-error skip) to skip unreadable images")
                print_log(f'translate: skipping unreadable image {name} ({err})', logger='current', level=30)
                stats['skipped_files'].append(name)
                bar.update(1)
                continue
            bucket = buckets.setdefault(img.shape, [])
            bucket.append((i, img))
            if len(bucket) == batch_size:
                run(bucket)
                bar.update(len(bucket))
                buckets.pop(img.shape)
        for bucket in buckets.values():
            run(bucket)
            bar.update(len(bucket))
    finally:
        bar.close()
        if restore is not None:
            restore()
    stats['skipped'] = len(stats['skipped_files'])
    if stats['skipped_files']:
        suffix = '' if num_shards == 1 else f'_shard{shard_id}of{num_shards}'
        list_path = osp.join(out_dir, f'skipped_images{suffix}.txt')
        atomic_write_bytes(list_path, ''.join(f'{p}\n' for p in stats['skipped_files']).encode())
        print_log(f'translate: {stats["skipped"]} unreadable image(s) skipped, listed in {list_path}',
                  logger='current', level=30)
    return stats
