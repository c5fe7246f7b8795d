"""Label id -> trainId tables and label readers shared by the converters, the datasets and the tests.

GTA5 and Cityscapes use the Cityscapes label ids; their id -> trainId table is taken from cityscapesscripts'
``labels`` (the reference definition). SYNTHIA-RAND-CITYSCAPES uses its own ids, stored in the first (red) channel
of a 16-bit PNG; that table is written out here because no library ships it (values: the authors' release).
"""
import numpy as np
from PIL import Image

IGNORE_INDEX = 255

# SYNTHIA-RAND-CITYSCAPES id -> Cityscapes trainId (authors' release; all other ids -> 255).
SYNTHIA_ID_TO_TRAIN_ID = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13, 18: 14, 19: 15,
    20: 16, 12: 17, 11: 18}


def cityscapes_id_to_train_id():
    """Cityscapes label id -> trainId for the 19 evaluated classes, from cityscapesscripts' label table.

    Ids whose trainId is 255 or -1 (void classes, license plate) are left out: they map to 255.
    """
    from cityscapesscripts.helpers.labels import labels
    return {label.id: label.trainId for label in labels if label.id >= 0 and 0 <= label.trainId < IGNORE_INDEX}


def build_lut(mapping, size=256):
    """A uint8 look-up table of ``size`` entries: ``mapping`` where given, 255 elsewhere."""
    lut = np.full(size, IGNORE_INDEX, np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


class LabelFileError(OSError):
    """A label or image file that cannot be used; the message is one line naming the file."""


def read_id_label(path):
    """Read a single-channel label id PNG (Cityscapes ``*_labelIds.png``, GTA5 palette PNGs) as uint8 ids.

    PIL is used on purpose: GTA5 labels are palette ('P') images, which OpenCV would expand to colours.
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ('P', 'L'):
                raise LabelFileError(f'{path}: expected a single-channel label id PNG, got mode {img.mode}')
            return np.asarray(img, dtype=np.uint8)
    except LabelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure is reported with the file name
        raise LabelFileError(f'cannot read label {path} ({type(e).__name__}: {e})') from None


def read_synthia_label(path):
    """Read a SYNTHIA 16-bit label PNG and return the class ids (first channel, uint16)."""
    import cv2
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise LabelFileError(f'cannot read label {path}')
    if lab.ndim == 3:
        lab = lab[..., 2]  # OpenCV returns BGR(A): the first (red) channel is index 2
    return lab


def image_size(path):
    """(width, height) of an image from its header, or a one-line :class:`LabelFileError`."""
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as e:  # noqa: BLE001
        raise LabelFileError(f'cannot read image {path} ({type(e).__name__}: {e})') from None


def check_readable(path):
    """Decode an image fully (not just its header); raise a one-line :class:`LabelFileError` if that fails."""
    try:
        with Image.open(path) as img:
            img.load()
    except Exception as e:  # noqa: BLE001
        raise LabelFileError(f'cannot read {path} ({type(e).__name__}: {e})') from None
