# Copyright (c) bdl_mm contributors.
"""Segmentation adaptation model M trained with the output-space discriminator D_M (BDL, Eq. 1 and Eq. 3)."""
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmseg.models.losses import cross_entropy
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType, OptMultiConfig, add_prefix
from torch import Tensor

from ..discriminators.output_discriminator import check_num_classes
from .class_mix import check_choice, class_mix
from .labels import check_label_values, stack_pseudo_labels
from .mean_teacher import build_teacher, teacher_labels


def _unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (MMSeparateDistributedDataParallel wraps each submodule)."""
    return getattr(module, 'module', module)


def _first_conv_in_channels(module: nn.Module) -> Optional[int]:
    """Input channels of a discriminator: its ``in_channels`` attribute, else its first convolution's."""
    in_channels = getattr(module, 'in_channels', None)
    if isinstance(in_channels, int):
        return in_channels
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return None


@MODELS.register_module()
class BDLSegmentor(BaseModel):
    """Segmentation model M trained with an output-space discriminator D_M and optional pseudo labels.

    One :meth:`train_step` follows the authors' release (``BDL.py``), with batch 1 per domain there:

    1. M update (Eq. 3), D_M frozen (``requires_grad=False``):

       - source: the wrapped segmentor's own losses (decode head and any auxiliary heads), backpropagated
         at once so the source graph is freed before the target forward pass (as in the release);
       - target, if the target samples carry ``gt_sem_seg`` (pseudo labels, 255 = ignored):
         ``lambda_ssl * CE`` at the target input size, CE = sum over kept pixels of ``w * ce`` divided by
         the number of kept pixels (label != 255; not the sum of the weights), ``w`` =
         ``data_samples.pseudo_weight`` if present, else 1 (MMSeg's ``cross_entropy`` with
         ``avg_non_ignore=True``, which divides by #kept + float32 eps): an all-255 label gives exactly 0;
         each auxiliary head adds the same CE on its own upsampled logits times its ``loss_weight``
         (``tgt.loss_ssl_aux``), as MMSeg adds an auxiliary head's loss on labelled data;
       - target, if ``adversarial``: ``lambda_adv * BCE(D_M(softmax(up(logits_T))), source_label)`` (Eq. 1,
         the M side), ``up`` = bilinear upsampling to the target input size with the decode head's
         ``align_corners``;

       then one step of ``optim_wrapper['segmentor']``.
    2. D_M update (if ``adversarial``): ``BCE(D(softmax(up(logits_S))), source_label) / 2 +
       BCE(D(softmax(up(logits_T))), target_label) / 2`` on detached predictions, one step of
       ``optim_wrapper['discriminator']``.

    Validation, testing and ``forward`` delegate to the wrapped segmentor, so MMSeg's metrics,
    ``tools/test.py`` and visualisers work on BDL checkpoints (state dict keys ``segmentor.*``,
    ``discriminator.*``). The wrapped segmentor's data preprocessor is used for both domains.

    The forward passes run inside each wrapper's ``optim_context`` and the updates go through
    ``backward``/``step``/``update_params``, so ``AmpOptimWrapper`` sub-wrappers (``--amp``) work. M's two
    backward passes per step make one update: ``accumulative_counts`` must be 1. Under
    ``MMSeparateDistributedDataParallel`` (``find_unused_parameters=False``) every forward pass of M goes through
    its DDP wrapper and every trainable parameter gets a gradient in each backward pass: auxiliary heads read the
    features of that same pass, and in a target pass without pseudo labels they get a zero-valued term.

    Args:
        segmentor (dict): Config of the MMSeg segmentor M, an ``EncoderDecoder`` (anything with
            ``extract_feat``, a single ``decode_head`` and optional ``auxiliary_head``: DeepLabV2, DeepLabV3+,
            SegFormer ...), including its ``data_preprocessor``: M's input normalisation, written only there
            (F's perceptual loss and pseudo labelling follow it).
        discriminator (dict, optional): Config of D_M, e.g. ``OutputDiscriminator``. Its input channels
            must equal M's number of output channels. Required when ``adversarial`` is True.
        lambda_adv (float): Weight of M's adversarial loss. Release: 0.001 (DeepLabV2-R101),
            1e-4 (VGG16-FCN8s).
        lambda_ssl (float): Weight of the target pseudo-label cross-entropy. Defaults to 1.0.
        class_mix (bool): Not in the release (the project's robust recipe): the pseudo-label cross-entropy is
            taken on the target images with half of a source crop's classes pasted in, with their source labels
            (DACS's ClassMix, :func:`~bdl_mm.models.segmentors.class_mix.class_mix`), in a third forward and
            backward pass; D_M still sees the plain target. Defaults to False.
        class_mix_choice (str): Not in the release or DACS: how ClassMix draws the half of the crop's classes it
            pastes: ``'uniform'`` (DACS, default) or ``'inverse_area'`` (each class with probability proportional to
            one over its pixel count in the crop: small classes first).
        mean_teacher (dict, optional): Not in the release (a switch of the project, DACS's mean teacher):
            ``dict(momentum=0.01, confidence=0.968)``. M keeps a teacher, mmengine's ``ExponentialMovingAverage``
            of its weights (``teacher = (1 - momentum) * teacher + momentum * M`` before every training step; the
            first step copies M, so the teacher starts from the weights M was loaded with), and in the steps whose
            target samples carry pseudo labels (the SSL stages) M trains on the teacher's labels of the same
            target batch instead of the labels read from the files: every pixel its most likely class, weighted by
            the image's fraction of pixels with teacher confidence >= ``confidence``
            (:func:`~bdl_mm.models.segmentors.mean_teacher.teacher_pseudo_labels`); ``class_mix`` then mixes those.
            The teacher is part of the model's state (``teacher.*``, its step count included), so a resumed stage
            and the next stage loading this one's checkpoint continue it; the exported M (``segmentor.pth``) and
            evaluation are the student's. Defaults to None (the release: the files' labels).
        adversarial (bool): Whether to train with D_M. False (ablation) drops the adversarial loss and the
            D_M update. Defaults to True.
        source_label (float): D_M label of source predictions (release: 0).
        target_label (float): D_M label of target predictions (release: 1).
        data_preprocessor (dict, optional): Set by MMEngine's Runner from the config's top-level
            ``data_preprocessor`` (None in the BDL base configs); used for the segmentor if its config has none,
            else it must be equal to the segmentor's (which normalises both domains).
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 segmentor: ConfigType,
                 discriminator: OptConfigType = None,
                 lambda_adv: float = 0.001,
                 lambda_ssl: float = 1.0,
                 class_mix: bool = False,
                 class_mix_choice: str = 'uniform',
                 mean_teacher: Optional[dict] = None,
                 adversarial: bool = True,
                 source_label: float = 0.,
                 target_label: float = 1.,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None):
        # M's input normalisation is written once, in model.segmentor.data_preprocessor. MMEngine's Runner passes
        # the config's top-level `data_preprocessor` here (None in the BDL bases): it fills in a segmentor without
        # one, and is otherwise refused unless equal, since one preprocessor serves both domains.
        seg_dp = segmentor.get('data_preprocessor')
        if data_preprocessor is not None:
            if seg_dp is None:
                segmentor = dict(segmentor, data_preprocessor=data_preprocessor)
            elif dict(seg_dp) != dict(data_preprocessor):
                diff = sorted(k for k in set(seg_dp) | set(data_preprocessor)
                              if seg_dp.get(k) != data_preprocessor.get(k))
                raise ValueError(f'BDLSegmentor: data_preprocessor {dict(data_preprocessor)} differs from '
                                 f'model.segmentor.data_preprocessor {dict(seg_dp)} (in {", ".join(diff)}); M\'s '
                                 'normalisation is set on model.segmentor only: remove the other one')
        elif seg_dp is None:
            raise ValueError('BDLSegmentor: model.segmentor.data_preprocessor is missing: M\'s input normalisation '
                             "(type='SegDataPreProcessor', mean, std, bgr_to_rgb) is written there, once")
        super().__init__(init_cfg=init_cfg)
        self.segmentor = MODELS.build(segmentor)
        if not hasattr(self.segmentor, 'extract_feat') or not isinstance(
                getattr(self.segmentor, 'decode_head', None), nn.Module) or isinstance(
                    self.segmentor.decode_head, nn.ModuleList):
            raise TypeError(f'BDLSegmentor: model.segmentor must be an EncoderDecoder-like segmentor with '
                            f'extract_feat and one decode_head, got {type(self.segmentor).__name__}')
        # One preprocessor for both domains: share the segmentor's (no second normalisation config).
        self.data_preprocessor = self.segmentor.data_preprocessor

        self.adversarial = adversarial
        if adversarial and discriminator is None:
            raise ValueError('BDLSegmentor: adversarial=True needs model.discriminator (D_M)')
        self.discriminator = MODELS.build(discriminator) if discriminator is not None else None
        if self.discriminator is not None:
            # D_M reads softmax(M's logits): its input channels must be M's output channels
            check_num_classes(_first_conv_in_channels(self.discriminator), self.segmentor.decode_head.out_channels)
        self.lambda_adv = float(lambda_adv)
        self.lambda_ssl = float(lambda_ssl)
        self.class_mix = bool(class_mix)
        self.class_mix_choice = check_choice(class_mix_choice)
        self.teacher, self.teacher_confidence = build_teacher(self.segmentor, mean_teacher)
        self.source_label = float(source_label)
        self.target_label = float(target_label)

    # ------------------------------------------------------------------ inference: delegate to M
    def forward(self,
                inputs: Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], list, Tensor]:
        """Forward of the wrapped segmentor (``mode='loss'`` gives its source-style supervised losses)."""
        return self.segmentor(inputs, data_samples, mode=mode)

    def val_step(self, data: Union[tuple, dict, list]) -> list:
        """Delegates to the wrapped segmentor."""
        return self.segmentor.val_step(data)

    def test_step(self, data: Union[tuple, dict, list]) -> list:
        """Delegates to the wrapped segmentor."""
        return self.segmentor.test_step(data)

    # ------------------------------------------------------------------ training
    def _logits(self, inputs: Tensor, data_samples: Optional[list] = None,
                with_feats: bool = False) -> Tuple[Tensor, dict, Optional[list]]:
        """Decode-head logits (feature resolution), the segmentor's losses given labelled samples, and M's
        features when auxiliary heads need them.

        Same computation as ``EncoderDecoder.loss`` (decode head ``forward`` + ``loss_by_feat``, auxiliary heads),
        but the logits are kept for D_M. The forward pass always goes through ``self.segmentor(mode='tensor')``,
        so that a DDP wrapper around the segmentor (``MMSeparateDistributedDataParallel``) sees it and
        synchronises the gradients; the features for the auxiliary heads (``extract_feat``'s output: the neck's,
        else the backbone's) are taken from that same pass by a forward hook. They are returned (third item)
        when the segmentor has auxiliary heads and ``data_samples`` or ``with_feats`` is given, else None.
        """
        seg = _unwrap(self.segmentor)
        captured = []
        handle = None
        if seg.with_auxiliary_head and (data_samples is not None or with_feats):
            feat_module = seg.neck if seg.with_neck else seg.backbone
            handle = feat_module.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            logits = self.segmentor(inputs, None, mode='tensor')
        finally:
            if handle is not None:
                handle.remove()
        feats = captured[-1] if captured else None
        losses = dict()
        if data_samples is not None:
            losses.update(add_prefix(seg.decode_head.loss_by_feat(logits, data_samples), 'decode'))
            if feats is not None:
                losses.update(seg._auxiliary_head_forward_train(feats, data_samples))
        return logits, losses, feats

    @staticmethod
    def _aux_heads(seg: nn.Module) -> list:
        """``[(log suffix, head)]`` of the segmentor's auxiliary heads, named as MMSeg names their losses."""
        if not seg.with_auxiliary_head:
            return []
        if isinstance(seg.auxiliary_head, nn.ModuleList):
            return [(f'aux_{idx}', head) for idx, head in enumerate(seg.auxiliary_head)]
        return [('aux', seg.auxiliary_head)]

    @staticmethod
    def _loss_weight(head: nn.Module) -> float:
        """The sum of the ``loss_weight`` of a head's ``loss_decode`` terms (MMSeg's weight of that head's loss)."""
        losses = head.loss_decode if isinstance(head.loss_decode, nn.ModuleList) else [head.loss_decode]
        return float(sum(getattr(loss, 'loss_weight', 1.0) for loss in losses))

    def _upsample(self, logits: Tensor, size: torch.Size, align_corners: Optional[bool] = None) -> Tensor:
        if align_corners is None:
            align_corners = _unwrap(self.segmentor).decode_head.align_corners
        return F.interpolate(logits, size=size, mode='bilinear', align_corners=align_corners)

    def _bce(self, d_out: Tensor, label: float) -> Tensor:
        return F.binary_cross_entropy_with_logits(d_out, torch.full_like(d_out, label))

    def _ssl_losses(self, up: Tensor, feats, aux_heads: list, labels: Tensor, weights: Optional[Tensor]) -> dict:
        """The pseudo-label cross-entropy of the upsampled logits ``up`` and, from ``feats``, of each auxiliary head
        (as MMSeg trains them on labels: the same CE times the head's ``loss_weight``), each times ``lambda_ssl``."""
        def ce(logits):
            return cross_entropy(logits, labels, weight=weights, reduction='mean', ignore_index=255,
                                 avg_non_ignore=True)

        losses = dict(loss_ssl=self.lambda_ssl * ce(up))
        for suffix, head in aux_heads:
            aux_up = self._upsample(head(feats), up.shape[2:], head.align_corners)
            losses[f'loss_ssl_{suffix}'] = self.lambda_ssl * self._loss_weight(head) * ce(aux_up)
        return losses

    def _class_mix(self, src: dict, tgt_inputs: Tensor, pseudo: Tensor, pseudo_w: Optional[Tensor]) -> tuple:
        """``(images, labels, weights)``: the target batch with half of a source crop's classes pasted in."""
        shape = src['inputs'].shape[2:]
        src_label = torch.stack([s.gt_sem_seg.data.long().reshape(shape) for s in src['data_samples']])
        return class_mix(src['inputs'], src_label, tgt_inputs, pseudo, pseudo_w, choice=self.class_mix_choice)[:3]

    def _mixed_ssl_step(self, seg_optim: OptimWrapper, images: Tensor, labels: Tensor,
                        weights: Optional[Tensor]) -> dict:
        """Forward the mixed images, backpropagate the pseudo-label cross-entropy (decode and auxiliary heads, as
        on the plain target), return its log entries."""
        aux_heads = self._aux_heads(_unwrap(self.segmentor))
        with seg_optim.optim_context(self):
            logits, _, feats = self._logits(images, with_feats=bool(aux_heads))
            losses = self._ssl_losses(self._upsample(logits, images.shape[2:]), feats, aux_heads, labels, weights)
            loss, log = self.parse_losses(losses)
        log.pop('loss')
        seg_optim.backward(loss)
        return log

    def train_step(self, data: dict, optim_wrapper: Union[OptimWrapperDict, OptimWrapper]) -> Dict[str, Tensor]:
        """One BDL iteration: M update (source CE, target pseudo-label CE, adversarial) then D_M update.

        Args:
            data (dict): ``dict(source=dict(inputs, data_samples), target=dict(inputs, data_samples))``.
            optim_wrapper (OptimWrapperDict): with keys ``segmentor`` and ``discriminator`` (the latter only
                when ``adversarial``); a plain ``OptimWrapper`` is accepted for the segmentor when
                ``adversarial`` is False.

        Returns:
            dict[str, Tensor]: every loss by name: ``src.<segmentor loss keys>``, ``tgt.loss_ssl`` (only
            with pseudo labels), ``tgt.loss_adv`` (weighted by ``lambda_adv``), ``dis.loss_src``,
            ``dis.loss_tgt`` (each already halved).
        """
        if isinstance(data, dict) and 'inputs' in data and 'source' not in data:
            data = dict(source=data)  # a plain labelled batch: source-only training (M(0) of Algorithm 1)
        if not isinstance(data, dict) or 'source' not in data or not set(data) <= {'source', 'target'}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise TypeError(f'BDLSegmentor.train_step expects dict(source=..., target=...) (UDADataset '
                            f'batches) or a plain source batch, got {got}')
        source_only = 'target' not in data
        if isinstance(optim_wrapper, OptimWrapperDict):
            if 'segmentor' not in optim_wrapper or (self.adversarial and not source_only
                                                     and 'discriminator' not in optim_wrapper):
                raise KeyError(f'BDLSegmentor: optim_wrapper needs keys segmentor and discriminator, got '
                               f'{list(optim_wrapper.keys())}')
            seg_optim = optim_wrapper['segmentor']
        elif self.adversarial and not source_only:
            raise TypeError('BDLSegmentor: adversarial training needs an OptimWrapperDict(segmentor=..., '
                            'discriminator=...)')
        else:
            seg_optim = optim_wrapper
        # M gets two backward passes per step (source, then target) and one update: no gradient accumulation
        for name, wrapper in (optim_wrapper.items() if isinstance(optim_wrapper, OptimWrapperDict) else
                              [('segmentor', optim_wrapper)]):
            if getattr(wrapper, '_accumulative_counts', 1) != 1:
                raise ValueError(f'BDLSegmentor: optim_wrapper.{name}.accumulative_counts must be 1, got '
                                 f'{wrapper._accumulative_counts}')
        dp = self.data_preprocessor
        if hasattr(dp, 'size_divisor') and getattr(dp, 'size', None) is None and dp.size_divisor is None:
            # MMSeg's stack_batch would stop here with a bare assertion
            raise ValueError('BDLSegmentor: model.segmentor.data_preprocessor needs size or size_divisor to batch '
                             'training images (MMSeg pads them); size_divisor=1 pads nothing')
        src = self.data_preprocessor(data['source'], True)
        num_classes = _unwrap(self.segmentor).decode_head.out_channels
        check_label_values(src['data_samples'], num_classes, 'seg_map_path')
        tgt = None if source_only else self.data_preprocessor(data['target'], True)
        adversarial = self.adversarial and not source_only
        log_vars = dict()
        if self.teacher is not None:  # before the step: the first update copies the weights M starts from
            self.teacher.update_parameters(_unwrap(self.segmentor))

        # ---- (1) M update, D_M frozen
        d_params = list(self.discriminator.parameters()) if adversarial else []
        d_flags = [p.requires_grad for p in d_params]
        for p in d_params:
            p.requires_grad_(False)

        try:
            with seg_optim.optim_context(self):
                src_logits, src_losses, _ = self._logits(src['inputs'], src['data_samples'])
                src_loss, src_log = self.parse_losses(src_losses)
            src_log.pop('loss')
            log_vars.update(add_prefix(src_log, 'src'))
            # backpropagate now: frees the source graph before the target forward pass (release practice)
            seg_optim.backward(src_loss)
            src_logits = src_logits.detach()

            tgt_logits = None
            if not source_only:
                tgt_shape = tgt['inputs'].shape[2:]
                check_label_values(tgt['data_samples'], num_classes, 'pseudo_label_path')
                pseudo, pseudo_w = stack_pseudo_labels(tgt['data_samples'], tgt_shape)
                if pseudo is not None and self.teacher is not None:  # the teacher's labels replace the files'
                    pseudo, pseudo_w = teacher_labels(self.teacher.module, tgt, tgt_shape, self.teacher_confidence,
                                                      self._upsample)
                    log_vars['tgt.teacher_confident'] = pseudo_w[:, 0, 0].mean()
                mix = pseudo is not None and self.class_mix
                if mix:  # the pseudo labels train M on the mixed images (below), not on the plain target
                    mixed = self._class_mix(src, tgt['inputs'], pseudo, pseudo_w)
                    pseudo, pseudo_w = None, None
            if not source_only and (pseudo is not None or adversarial):
                # Auxiliary heads: trained on the pseudo labels as MMSeg trains them on labels (same CE, times the
                # head's loss_weight); without pseudo labels they get a zero term under DDP, where every parameter
                # must receive a gradient in each backward pass (find_unused_parameters=False).
                seg = _unwrap(self.segmentor)
                aux_heads = self._aux_heads(seg) if (pseudo is not None or seg is not self.segmentor) else []
                with seg_optim.optim_context(self):
                    tgt_logits, _, tgt_feats = self._logits(tgt['inputs'], with_feats=bool(aux_heads))
                    tgt_up = self._upsample(tgt_logits, tgt_shape)
                    tgt_losses, unused = dict(), None
                    if pseudo is not None:
                        tgt_losses.update(self._ssl_losses(tgt_up, tgt_feats, aux_heads, pseudo, pseudo_w))
                    else:
                        for _, head in aux_heads:
                            aux_logits = head(tgt_feats)
                            unused = aux_logits.sum() * 0. if unused is None else unused + aux_logits.sum() * 0.
                    if adversarial:
                        # the unwrapped D_M: only the gradient w.r.t. its input is wanted here, so no DDP sync
                        d_out = _unwrap(self.discriminator)(F.softmax(tgt_up, dim=1))
                        tgt_losses['loss_adv'] = self.lambda_adv * self._bce(d_out, self.source_label)
                    tgt_loss, tgt_log = self.parse_losses(tgt_losses)
                    if unused is not None:
                        tgt_loss = tgt_loss + unused
                tgt_log.pop('loss')
                log_vars.update(add_prefix(tgt_log, 'tgt'))
                seg_optim.backward(tgt_loss)
                tgt_logits = tgt_logits.detach()
                del tgt_up, tgt_loss, tgt_feats
            if not source_only and mix:
                log_vars.update(add_prefix(self._mixed_ssl_step(seg_optim, *mixed), 'tgt'))
            seg_optim.step()
            seg_optim.zero_grad()
        finally:
            for p, flag in zip(d_params, d_flags):
                p.requires_grad_(flag)

        # ---- (2) D_M update on detached predictions. Each term is backpropagated right after its forward
        # pass (as the release does); a DDP-wrapped D_M needs one backward per forward.
        if adversarial:
            dis_optim = optim_wrapper['discriminator']
            for key, logits, shape, label in (('loss_src', src_logits, src['inputs'].shape[2:], self.source_label),
                                              ('loss_tgt', tgt_logits, tgt_shape, self.target_label)):
                with dis_optim.optim_context(self.discriminator):
                    with torch.no_grad():
                        prob = F.softmax(self._upsample(logits, shape), dim=1)
                    loss = self._bce(self.discriminator(prob), label) / 2
                dis_optim.backward(loss)
                log_vars[f'dis.{key}'] = loss.detach()
            dis_optim.step()
            dis_optim.zero_grad()
        return {k: v.detach() for k, v in log_vars.items()}
