"""Loading of SSL pseudo labels (Sec. 3.2) into the target sample."""
import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS
from PIL import Image


def _read_uint8(path, what):
    try:
        with Image.open(path) as img:
            if img.mode not in ('L', 'P'):
                raise ValueError(f'expected a single-channel uint8 PNG, got mode {img.mode}')
            return np.asarray(img, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - reported in one line naming the file
        raise OSError(f'cannot read {what} {path} ({type(e).__name__}: {e})') from None


@TRANSFORMS.register_module()
class LoadPseudoLabel(BaseTransform):
    """Load the pseudo label set by :class:`UDADataset` as the target's ``gt_seg_map`` (255 = ignored).

    Place it after ``Resize`` in the target pipeline: pseudo labels are stored at the size the model ran at, which
    must equal the resized image size (checked, one-line error naming the file). A no-op when the sample has no
    ``pseudo_label_path`` (plain adversarial training: the target then has no label and no CE term).

    Required keys: ``img`` (for its size); optional ``pseudo_label_path``, ``pseudo_weight_path``.
    Added keys: ``gt_seg_map`` (uint8, HxW) and, with a weight file (soft SSL), ``pseudo_weight`` (float32 HxW in
    [0, 1], the stored ``round(255 * max prob)`` / 255); both are appended to ``seg_fields``.
    """

    def transform(self, results: dict) -> dict:
        path = results.get('pseudo_label_path')
        if not path:
            return results
        h, w = results['img'].shape[:2]
        label = _read_uint8(path, 'pseudo label')
        if label.shape != (h, w):
            raise ValueError(f'pseudo label {path} is {label.shape[1]}x{label.shape[0]} but the target image was '
                             f'resized to {w}x{h}')
        results['gt_seg_map'] = label
        seg_fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in seg_fields:
            seg_fields.append('gt_seg_map')
        weight_path = results.get('pseudo_weight_path')
        if weight_path:
            weight = _read_uint8(weight_path, 'pseudo-label weight')
            if weight.shape != (h, w):
                raise ValueError(f'pseudo-label weight {weight_path} is {weight.shape[1]}x{weight.shape[0]} but the '
                                 f'target image was resized to {w}x{h}')
            results['pseudo_weight'] = weight.astype(np.float32) / 255.
            if 'pseudo_weight' not in seg_fields:
                seg_fields.append('pseudo_weight')
        return results
