"""Checks run when a dataset is initialised, so that bad input fails before training with one line naming the file.

MMSeg's ``BaseSegDataset`` lists image/label pairs without looking at them; these checks add: the data root, the
split file and the image folder exist, the list is not empty, every image has its label, and (``verify_files``)
every image and label is a readable PNG of the same size (header read only: fast even for GTA5's 25k pairs).

The per-file checks of the preflight scan (:mod:`bdl_mm.engine.preflight`) live here too, and
:func:`name_file_errors`, which makes a dataset name the file of a sample that fails to load mid-run.
"""
import os.path as osp

from mmengine.utils import ProgressBar
from PIL import Image

from .label_maps import LabelFileError, check_readable, image_size


def check_dataset_paths(name, data_root, ann_file, img_dir):
    """The root, the split file (if any) and the image folder must exist."""
    if data_root and not osp.isdir(data_root):
        raise FileNotFoundError(f'{name}: data root {data_root} does not exist')
    if ann_file and not osp.isfile(ann_file):
        raise FileNotFoundError(f'{name}: split file {ann_file} does not exist')
    if img_dir and not osp.isdir(img_dir):
        raise FileNotFoundError(f'{name}: image folder {img_dir} does not exist')


def check_data_list(name, data_list, require_labels=True, verify_files=False, converter=None):
    """Check the pairs of a loaded data list; raise ``FileNotFoundError``/``LabelFileError`` naming the file."""
    if not data_list:
        raise FileNotFoundError(f'{name}: no images found')
    hint = f' (run {converter})' if converter else ''
    for info in data_list:
        if not osp.isfile(info['img_path']):
            raise FileNotFoundError(f'{name}: image {info["img_path"]} does not exist')
        seg = info.get('seg_map_path')
        if require_labels and (seg is None or not osp.isfile(seg)):
            raise FileNotFoundError(f'{name}: label {seg} of image {info["img_path"]} does not exist{hint}')
    if not verify_files:
        return
    progress = ProgressBar(len(data_list))
    for info in data_list:
        img_size = image_size(info['img_path'])
        seg = info.get('seg_map_path')
        if require_labels:
            seg_size = image_size(seg)
            if seg_size != img_size:
                raise LabelFileError(f'{name}: label {seg} is {seg_size[0]}x{seg_size[1]} but image '
                                     f'{info["img_path"]} is {img_size[0]}x{img_size[1]}')
        progress.update()


# ----------------------------------------------------------------------------------------------------------------
# Per-file checks (the preflight scan of bdl_mm.engine.preflight) and errors that name the file of a failing sample.
PNG_END = b'IEND'


def image_header(path):
    """``(width, height, mode)`` of an image read from its header; a PNG must also end with its ``IEND`` chunk,
    which catches a truncated file (an interrupted copy) without decoding it. Raises a one-line
    :class:`LabelFileError` naming the file."""
    try:
        with Image.open(path) as img:
            size, mode, fmt = img.size, img.mode, img.format
        if fmt == 'PNG':
            with open(path, 'rb') as f:
                f.seek(-12, 2)
                tail = f.read(12)
            if tail[4:8] != PNG_END:
                raise ValueError('truncated: the PNG end chunk is missing')
    except Exception as e:  # noqa: BLE001 - any failure is reported with the file name
        raise LabelFileError(f'cannot read image {path} ({type(e).__name__}: {e})') from None
    return size[0], size[1], mode


def decode_image(path):
    """Decode an image as the training pipelines do (OpenCV, ``mmcv.imfrombytes``); ``(width, height)``."""
    import cv2
    import numpy as np
    try:
        with open(path, 'rb') as f:
            buf = np.frombuffer(f.read(), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    except Exception as e:  # noqa: BLE001
        raise LabelFileError(f'cannot read image {path} ({type(e).__name__}: {e})') from None
    if img is None:
        raise LabelFileError(f'cannot decode image {path} (corrupt or not an image)')
    return img.shape[1], img.shape[0]


def decode_label(path):
    """Decode a label as MMSeg's ``LoadAnnotations`` does (Pillow, unchanged): a 2-D uint8 array."""
    import numpy as np
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except Exception as e:  # noqa: BLE001
        raise LabelFileError(f'cannot read label {path} ({type(e).__name__}: {e})') from None
    return arr


def check_label_ids(path, arr, num_classes, ignore_index=255, reduce_zero_label=False):
    """Every value of a trainId label is a class id (< ``num_classes``) or ``ignore_index``; with
    ``reduce_zero_label`` the ids are 1..num_classes and 0 is ignored."""
    import numpy as np
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise LabelFileError(f'label {path} is not a single-channel 8-bit PNG (shape {arr.shape}, {arr.dtype})')
    top = num_classes + (1 if reduce_zero_label else 0)
    if int(arr.max()) < top:
        return
    values = np.unique(arr)
    bad = [int(v) for v in values if v >= top and v != ignore_index]
    if bad:
        raise LabelFileError(f'label {path} holds ids {bad[:5]} outside 0..{top - 1} and {ignore_index} '
                             f'({num_classes} classes): not a trainId label?')


class NamedFileErrors:
    """A dataset pipeline that re-raises any failure of a sample in one line naming its files.

    A file changed or corrupted after the preflight scan makes the loaders fail deep inside MMCV/MMagic
    (``'NoneType' object has no attribute 'ndim'``); this wrapper names the file (the one that cannot be read, if
    one cannot, else every file of the sample). Wrap a dataset with :func:`name_file_errors`.
    """

    def __init__(self, pipeline, name):
        self.pipeline = pipeline
        self.name = name

    @property
    def transforms(self):  # as mmengine's Compose, for code that walks the transforms
        return getattr(self.pipeline, 'transforms', [])

    def __call__(self, results):
        try:
            return self.pipeline(results)
        except LabelFileError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised in one line naming the file(s)
            raise sample_error(self.name, results, e) from e

    def __repr__(self):
        return f'NamedFileErrors({self.pipeline!r})'


def sample_files(results):
    """The file paths of a data sample (``img_path``, ``seg_map_path``, ``img_<domain>_path`` ...)."""
    if not isinstance(results, dict):
        return []
    return [v for k, v in results.items() if isinstance(v, str) and (k == 'path' or k.endswith('_path')) and v]


def sample_error(name, results, error):
    """One-line :class:`LabelFileError` for a failed sample: the unreadable file if one is, else all its files."""
    files = sample_files(results)
    for path in files:
        if osp.isfile(path):
            try:
                check_readable(path)
            except LabelFileError as err:
                return LabelFileError(f'{name}: {err}')
        elif osp.splitext(path)[1]:
            return LabelFileError(f'{name}: file {path} does not exist')
    first_line = str(error).splitlines()[0] if str(error) else ''
    return LabelFileError(f'{name}: sample {", ".join(files) or "?"} failed: {type(error).__name__}: {first_line}')


def name_file_errors(dataset, name=None):
    """Wrap the pipeline of ``dataset`` (and of the datasets it wraps) in :class:`NamedFileErrors`; idempotent.
    Returns ``dataset``."""
    for attr in ('datasets', ):  # ConcatDataset
        for sub in getattr(dataset, attr, None) or []:
            name_file_errors(sub, name)
    inner = getattr(dataset, 'dataset', None)  # RepeatDataset, ClassBalancedDataset, Subset
    if inner is not None and inner is not dataset:
        name_file_errors(inner, name)
    pipeline = getattr(dataset, 'pipeline', None)
    if pipeline is not None and callable(pipeline) and not isinstance(pipeline, NamedFileErrors):
        dataset.pipeline = NamedFileErrors(pipeline, name or type(dataset).__name__)
    return dataset
