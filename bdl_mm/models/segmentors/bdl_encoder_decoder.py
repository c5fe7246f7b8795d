# Copyright (c) bdl_mm contributors.
"""The segmentation model M as the BDL release predicts with it (evaluation, SSL confidences)."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor

UPSAMPLE_MODES = ('probs', 'logits')


@MODELS.register_module()
class BDLEncoderDecoder(EncoderDecoder):
    """MMSeg's ``EncoderDecoder`` whose prediction follows the authors' release (``evaluation.py``, ``SSL.py``).

    The release takes the softmax of the decode head's logits at the head's resolution (1/8 for DeepLabV2),
    upsamples the PROBABILITIES once, bilinearly with ``align_corners=True``, to the size of the label (the
    full-resolution ground truth, or the 512x1024 pseudo labels), then takes the argmax. MMSeg upsamples the
    LOGITS twice (to the network input, then to ``ori_shape``) before the argmax, which differs at class
    boundaries. ``test_cfg.upsample`` chooses: ``'probs'`` (release) or ``'logits'`` (MMSeg's own order, i.e.
    exactly :class:`EncoderDecoder`). Training is :class:`EncoderDecoder`'s, unchanged.

    With ``'probs'``, ``predict`` stores the upsampled probabilities in ``seg_logits`` (their argmax is the
    prediction) and :meth:`predict_probs` gives them at any size (used by pseudo labelling). Only whole-image
    inference exists in the release: ``test_cfg.mode='slide'`` needs ``upsample='logits'``.
    Written here because MMSeg has no option for the order of softmax and upsampling.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        test_cfg = self.test_cfg or {}
        self.upsample = test_cfg.get('upsample', 'logits')
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f'model.test_cfg.upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}')
        if self.upsample == 'probs' and test_cfg.get('mode', 'whole') != 'whole':
            raise ValueError("model.test_cfg.upsample='probs' (the release's prediction) needs test_cfg.mode='whole', "
                             f"got mode={test_cfg.get('mode')!r}; use upsample='logits' for slide inference")

    def head_probs(self, inputs: Tensor) -> Tensor:
        """Softmax of the decode head's logits at the head's own resolution (N, C, h, w)."""
        return F.softmax(self.decode_head.forward(self.extract_feat(inputs)).float(), dim=1)

    def predict_probs(self, inputs: Tensor, size: Sequence[int],
                      batch_img_metas: Optional[List[dict]] = None) -> Tensor:
        """Class probabilities of a batch at ``size`` (h, w): softmax at the head's resolution, then ONE bilinear
        upsampling (release). A batch padded by the data preprocessor is upsampled to the padded input and
        cropped to each image's ``img_shape`` first (two steps; the release never pads)."""
        probs = self.head_probs(inputs)
        padded = self._padding(batch_img_metas)
        if padded is None:
            return self._resize(probs, size)
        out = []
        for p, (top, bottom, left, right) in zip(probs.split(1), padded):
            p = self._resize(p, inputs.shape[2:])
            p = p[..., top:inputs.shape[2] - bottom, left:inputs.shape[3] - right]
            out.append(self._resize(p, size))
        return torch.cat(out)

    def predict(self, inputs: Tensor, data_samples: Optional[list] = None) -> list:
        if self.upsample == 'logits':
            return super().predict(inputs, data_samples)
        if data_samples is None:
            shape = tuple(inputs.shape[2:])
            data_samples = [SegDataSample(metainfo=dict(ori_shape=shape, img_shape=shape, pad_shape=shape,
                                                        padding_size=[0] * 4)) for _ in range(inputs.shape[0])]
        metas = [s.metainfo for s in data_samples]
        shapes = [tuple(m.get('ori_shape', inputs.shape[2:]))[:2] for m in metas]
        if len(set(shapes)) == 1:
            probs = self.predict_probs(inputs, shapes[0], metas).split(1)
        else:  # one upsampling per image to its own label size
            probs = [self.predict_probs(x, s, [m]) for x, s, m in zip(inputs.split(1), shapes, metas)]
        for sample, meta, p in zip(data_samples, metas, probs):
            p = p[0]
            if meta.get('flip', False):
                p = p.flip(dims=(2, ) if meta.get('flip_direction') == 'horizontal' else (1, ))
            sample.set_data(dict(seg_logits=PixelData(data=p), pred_sem_seg=PixelData(data=p.argmax(0, keepdim=True))))
        return data_samples

    def _resize(self, x: Tensor, size) -> Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=self.align_corners)

    @staticmethod
    def _padding(batch_img_metas: Optional[List[dict]]) -> Optional[List[Tuple[int, int, int, int]]]:
        """(top, bottom, left, right) padding per image, or None when no image is padded."""
        if not batch_img_metas:
            return None
        pads = []
        for meta in batch_img_metas:
            left, right, top, bottom = meta.get('img_padding_size', meta.get('padding_size', [0] * 4)) or [0] * 4
            pads.append((top, bottom, left, right))
        return pads if any(any(p) for p in pads) else None
