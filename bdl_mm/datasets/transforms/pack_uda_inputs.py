"""Packing of a target sample whose pseudo labels carry per-pixel weights (soft SSL)."""
import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackUDAInputs(PackSegInputs):
    """:class:`PackSegInputs` that also packs ``pseudo_weight`` as ``data_samples.pseudo_weight``
    (``PixelData(data=FloatTensor[1, H, W])``) and keeps the pseudo-label paths in the meta information."""

    def __init__(self,
                 meta_keys=('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor', 'flip',
                            'flip_direction', 'reduce_zero_label', 'pseudo_label_path', 'pseudo_weight_path')):
        super().__init__(meta_keys=meta_keys)

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        if 'pseudo_weight' in results:
            weight = np.ascontiguousarray(results['pseudo_weight'], dtype=np.float32)
            packed['data_samples'].set_data(dict(pseudo_weight=PixelData(data=torch.from_numpy(weight[None]))))
        return packed
