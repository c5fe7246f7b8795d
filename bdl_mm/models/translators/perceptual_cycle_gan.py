# Copyright (c) bdl_mm contributors.
"""Translation model F of BDL (Eq. 2): MMagic's CycleGAN plus a perceptual loss through a frozen M."""
import copy
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmagic.models.editors.cyclegan import CycleGAN
from mmagic.models.utils import set_requires_grad
from mmagic.registry import MODELS
from mmengine.registry import DefaultScope

from .conv_bn_fold import fold_conv_bn
from .frozen_segmentor import build_frozen_segmentor
from .structure_loss import parse_structure_loss, structure_losses

DISTANCES = ('mse_instance_norm', 'l1')
BATCH_MODES = ('split', 'joint', 'none')
UPDATE_ORDERS = ('discriminators_first', 'generators_first')
CHANNELS_LAST = (True, False, 'auto')
PERCEPTUAL_DEFAULTS = dict(lambda_per=0.1, lambda_per_recon=10., distance='mse_instance_norm', batch_mode='split',
                           fold_bn=True, channels_last='auto')


def _as_channel_list(value, name: str) -> List[float]:
    """A scalar or per-channel sequence (or tensor) as a list of 3 floats."""
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    elif not isinstance(value, (list, tuple)):
        value = [value]
    value = [float(v) for v in value]
    if len(value) == 1:
        value = value * 3
    if len(value) != 3:
        raise ValueError(f'{name} must have 1 or 3 values, got {value}')
    return value


def _order(value: Optional[str], name: str) -> str:
    order = 'BGR' if value is None else str(value).upper()
    if order not in ('BGR', 'RGB'):
        raise ValueError(f"{name} must be 'BGR' or 'RGB', got {value!r}")
    return order


@MODELS.register_module()
class PerceptualCycleGAN(CycleGAN):
    """CycleGAN whose generators are also trained with BDL's perceptual loss through a frozen segmentation model M.

    Everything of MMagic's :class:`CycleGAN` is kept (ResNet generators, PatchGAN discriminators, LSGAN,
    cycle and identity losses, image buffer, ``train_step``); only the generator loss gets, for every domain
    ``d`` with opposite domain ``e``::

        loss_per_d       = lambda_per       * dist(M(x_d), M(G_e(x_d)))
        loss_per_recon_d = lambda_per_recon * dist(M(x_d), M(G_d(G_e(x_d))))

    ``M(x_d)`` is a constant (no gradient); the other two pass their gradient through M to the generators.
    ``dist`` is ``'mse_instance_norm'`` (the authors' release: MSE between instance-normalised logits, no affine,
    the default) or ``'l1'`` (the paper: L1 between M's outputs). M's output is its raw logits as returned by
    ``segmentor(inputs, mode='tensor')`` (the decode head's resolution, as in the release).

    M is held outside the module tree: it is not in ``state_dict()`` (F checkpoints stay small; M comes from its
    own checkpoint), not in ``parameters()`` (no optimiser sees it), and ``train()`` never switches it out of eval
    mode; ``.to()/.cuda()/.half()`` still move it (see :meth:`_apply`).

    Generator images are converted to M's input with the generator's data preprocessor (its mean, std and
    ``output_channel_order``; ``None`` means the loaded order, BGR) and ``seg_input``.

    Args:
        segmentor (dict, optional): ``dict(config=<MMSeg model cfg dict or path to an MMSeg config>,
            checkpoint=<path or None>, num_classes=<int>)``. Required unless the perceptual loss is off.
        seg_input (dict, optional): M's input format ``dict(mean=[...], std=[...], channel_order='BGR'|'RGB')``
            in pixel units (0-255). Checked against M's own data preprocessor at build; ``None`` takes M's.
            ``gen_channel_order`` may override the generator's channel order.
        perceptual_loss (dict, optional): ``dict(lambda_per=0.1, lambda_per_recon=10.,
            distance='mse_instance_norm', batch_mode='split', fold_bn=True, channels_last='auto')``.
            ``batch_mode``: ``'split'`` runs M once without gradient on all real images and once with gradient on
            all generated images; ``'joint'`` runs one forward on everything; ``'none'`` one forward per image
            tensor (the release). How M runs (same function, float rounding aside, see :meth:`loss_segmentor`):
            ``fold_bn`` folds M's eval-mode BatchNorm into its convs; ``channels_last`` runs it in channels-last
            memory format (``'auto'``: on the CPU only, where it was measured faster). Missing keys take these
            values. ``None`` or both lambdas 0 disables the loss: the model is then exactly MMagic's CycleGAN (and
            needs no segmentor).
        structure_loss (dict, optional): ``dict(weight=..., scale=4)``: also keep each translation's edges where its
            input's are (``loss_struct_<domain>``, :mod:`.structure_loss`; not in the paper or the release). ``None``
            (default) is off.
        update_order (str): ``'discriminators_first'`` (default): MMagic's ``train_step``, unchanged (D update,
            then G update). ``'generators_first'``: the release's ``optimize_parameters`` (G update with the
            current D, then D update on the same, detached, generated images through the image pool).
        *args, **kwargs: the arguments of MMagic's :class:`CycleGAN`.
    """

    def __init__(self,
                 *args,
                 segmentor: Optional[dict] = None,
                 seg_input: Optional[dict] = None,
                 perceptual_loss: Optional[dict] = PERCEPTUAL_DEFAULTS,
                 structure_loss: Optional[dict] = None,
                 update_order: str = 'discriminators_first',
                 **kwargs):
        # Unscoped generator/discriminator/preprocessor types are MMagic's, whatever the config's default scope.
        with DefaultScope.overwrite_default_scope('mmagic'):
            super().__init__(*args, **kwargs)
        if update_order not in UPDATE_ORDERS:
            raise ValueError(f'update_order must be one of {UPDATE_ORDERS}, got {update_order!r}')
        if update_order == 'generators_first' and (self.discriminator_steps != 1 or self.disc_init_steps != 0):
            raise ValueError("update_order='generators_first' (the release) updates both every step: it needs "
                             f'discriminator_steps=1 and disc_init_steps=0, got {self.discriminator_steps} and '
                             f'{self.disc_init_steps}')
        self.update_order = update_order
        per = dict(PERCEPTUAL_DEFAULTS)
        if perceptual_loss is None:
            per.update(lambda_per=0., lambda_per_recon=0.)
        else:
            unknown = set(perceptual_loss) - set(per)
            if unknown:
                raise ValueError(f'perceptual_loss has unknown keys {sorted(unknown)}; allowed: {sorted(per)}')
            per.update(perceptual_loss)
        if per['distance'] not in DISTANCES:
            raise ValueError(f"perceptual_loss.distance must be one of {DISTANCES}, got {per['distance']!r}")
        if per['batch_mode'] not in BATCH_MODES:
            raise ValueError(f"perceptual_loss.batch_mode must be one of {BATCH_MODES}, got {per['batch_mode']!r}")
        if not isinstance(per['fold_bn'], bool):
            raise ValueError(f"perceptual_loss.fold_bn must be True or False, got {per['fold_bn']!r}")
        if per['channels_last'] not in CHANNELS_LAST:
            raise ValueError(f'perceptual_loss.channels_last must be one of {CHANNELS_LAST}, '
                             f"got {per['channels_last']!r}")
        self.fold_bn = per['fold_bn']
        self.channels_last = per['channels_last']
        self.lambda_per = float(per['lambda_per'])
        self.lambda_per_recon = float(per['lambda_per_recon'])
        self.distance = per['distance']
        self.batch_mode = per['batch_mode']
        self.with_perceptual = self.lambda_per != 0 or self.lambda_per_recon != 0
        self.structure_weight, self.structure_scale = parse_structure_loss(structure_loss)

        # M lives in __dict__ only (see class docstring); so does its copy that runs the loss (loss_segmentor).
        self.__dict__['segmentor'] = None
        self.__dict__['_loss_seg'] = None  # (key of M's state, the module)
        if segmentor is None:
            if self.with_perceptual:
                raise ValueError('PerceptualCycleGAN: perceptual_loss is on (lambda_per='
                                 f'{self.lambda_per}, lambda_per_recon={self.lambda_per_recon}) but no segmentor '
                                 'is configured; set model.segmentor=dict(config=..., checkpoint=..., '
                                 'num_classes=...) or perceptual_loss=None')
            return
        unknown = set(segmentor) - {'config', 'checkpoint', 'num_classes'}
        if unknown or 'config' not in segmentor:
            raise ValueError(f'segmentor must be dict(config=..., checkpoint=None, num_classes=None), '
                             f'got keys {sorted(segmentor)}')
        seg = build_frozen_segmentor(segmentor['config'], segmentor.get('checkpoint'))
        self.__dict__['segmentor'] = seg
        self._check_num_classes(seg, segmentor.get('num_classes'))
        self._setup_seg_input(seg, seg_input)

    # ------------------------------------------------------------------ build-time checks and conversion
    @staticmethod
    def _check_num_classes(seg: nn.Module, expected: Optional[int]) -> None:
        found = getattr(seg, 'num_classes', None)
        if found is None and hasattr(seg, 'decode_head'):
            found = getattr(seg.decode_head, 'num_classes', None)
        if expected is not None and found != expected:
            raise ValueError(f'segmentor M predicts {found} classes but model.segmentor.num_classes is {expected}')

    def _setup_seg_input(self, seg: nn.Module, seg_input: Optional[dict]) -> None:
        seg_dp = seg.data_preprocessor
        if getattr(seg_dp, '_enable_normalize', False):
            m_mean, m_std = _as_channel_list(seg_dp.mean, 'M mean'), _as_channel_list(seg_dp.std, 'M std')
        else:
            m_mean, m_std = [0.] * 3, [1.] * 3
        # MMSeg loads images BGR; a channel conversion in its preprocessor means it is fed RGB.
        m_order = 'RGB' if getattr(seg_dp, 'channel_conversion', False) else 'BGR'
        seg_input = dict(seg_input or dict(mean=m_mean, std=m_std, channel_order=m_order))
        unknown = set(seg_input) - {'mean', 'std', 'channel_order', 'gen_channel_order'}
        if unknown:
            raise ValueError(f'seg_input has unknown keys {sorted(unknown)}')
        s_mean = _as_channel_list(seg_input.get('mean', 0.), 'seg_input.mean')
        s_std = _as_channel_list(seg_input.get('std', 1.), 'seg_input.std')
        s_order = _order(seg_input.get('channel_order'), 'seg_input.channel_order')
        if not (torch.allclose(torch.tensor(s_mean), torch.tensor(m_mean), atol=1e-4)
                and torch.allclose(torch.tensor(s_std), torch.tensor(m_std), atol=1e-4) and s_order == m_order):
            raise ValueError(f'seg_input (mean={s_mean}, std={s_std}, channel_order={s_order}) does not match the '
                             f"segmentor M's data_preprocessor (mean={m_mean}, std={m_std}, "
                             f'channel_order={m_order})')
        if any(s == 0 for s in s_std):
            raise ValueError(f'seg_input.std must be non-zero, got {s_std}')

        gen_dp = self.data_preprocessor
        if getattr(gen_dp, '_enable_normalize', False):
            g_mean, g_std = _as_channel_list(gen_dp.mean, 'generator mean'), _as_channel_list(gen_dp.std, 'std')
        else:
            g_mean, g_std = [0.] * 3, [1.] * 3
        g_order = _order(seg_input.get('gen_channel_order', getattr(gen_dp, 'output_channel_order', None)),
                         'generator channel order')
        # seg[c] = (gen[perm[c]] * g_std[perm[c]] + g_mean[perm[c]] - s_mean[c]) / s_std[c]
        perm = [0, 1, 2] if g_order == s_order else [2, 1, 0]
        scale = [g_std[p] / s_std[c] for c, p in enumerate(perm)]
        shift = [(g_mean[p] - s_mean[c]) / s_std[c] for c, p in enumerate(perm)]
        self._seg_perm = perm
        self.register_buffer('_seg_scale', torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('_seg_shift', torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.seg_input = dict(mean=s_mean, std=s_std, channel_order=s_order, gen_channel_order=g_order)

    def _apply(self, fn, *args, **kwargs):
        """Apply device/dtype moves to M too, although it is not a submodule."""
        super()._apply(fn, *args, **kwargs)
        if self.__dict__.get('segmentor') is not None:
            self.segmentor._apply(fn, *args, **kwargs)
        self.__dict__['_loss_seg'] = None  # rebuilt from the moved M at the next use
        return self

    def init_weights(self):
        """Initialise every generator and discriminator with its own ``init_weights`` (``init_cfg``).

        MMagic 1.2.0's ``BaseTranslationModel.init_weights`` (called by the runner) fails with ``UnboundLocalError``
        in ``generation_init_weights``: it tags the networks with ``_params_init_info``, for which that function
        logs an ``init_info`` it only sets for conv/BN layers. Calling the networks' own ``init_weights`` gives
        the same initialisation (``normal``, gain 0.02 in the release config). M is never re-initialised here.
        """
        for domain in self._reachable_domains:
            self.get_module(self.generators)[domain].init_weights()
            if self.discriminators is not None:
                self.get_module(self.discriminators)[domain].init_weights()

    # ------------------------------------------------------------------ perceptual loss
    def _use_channels_last(self, device: torch.device) -> bool:
        return self.channels_last is True or (self.channels_last == 'auto' and device.type == 'cpu')

    def loss_segmentor(self) -> nn.Module:
        """The module that computes M's logits for the perceptual loss: M itself, or (``fold_bn`` /
        ``channels_last``) a copy of M with its BatchNorm folded into the convs and/or its weights in channels-last
        format. Same function as M in eval mode, up to float rounding (relative ~1e-6, forward and gradient).

        The copy is derived data, never trained or saved: it is rebuilt whenever M's tensors change (a new
        checkpoint loaded into M, an in-place edit, a move to another device or dtype). Measured on 2 CPU cores
        (``tools/benchmark_translation.py``): see the README's benchmark section.
        """
        seg = self.segmentor
        if seg.training:  # someone switched it; M must stay in eval mode
            seg.eval()
        if not self.fold_bn and not self._use_channels_last(self._seg_scale.device):
            return seg
        tensors = [*seg.parameters(), *seg.buffers()]
        key = (id(seg), tuple((t.data_ptr(), t._version) for t in tensors))
        cached = self.__dict__.get('_loss_seg')
        if cached is not None and cached[0] == key:
            return cached[1]
        fast = copy.deepcopy(seg).eval()
        if self.fold_bn:
            fold_conv_bn(fast)
        if self._use_channels_last(self._seg_scale.device):
            fast = fast.to(memory_format=torch.channels_last)
        fast.requires_grad_(False)
        self.__dict__['_loss_seg'] = (key, fast)
        return fast

    def to_seg_input(self, img: torch.Tensor) -> torch.Tensor:
        """Convert generator-range images (N, 3, H, W) to M's input normalisation."""
        if self._seg_perm != [0, 1, 2]:
            img = img[:, self._seg_perm]
        return img * self._seg_scale.to(img.dtype) + self._seg_shift.to(img.dtype)

    def seg_logits(self, imgs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """M's logits for several image batches, concatenating those of equal size into one forward."""
        groups: Dict[tuple, List[int]] = {}
        for i, img in enumerate(imgs):
            groups.setdefault(tuple(img.shape[1:]), []).append(i)
        out: List[Optional[torch.Tensor]] = [None] * len(imgs)
        seg = self.loss_segmentor()
        channels_last = self._use_channels_last(imgs[0].device) if imgs else False
        for idxs in groups.values():
            batch = torch.cat([imgs[i] for i in idxs]) if len(idxs) > 1 else imgs[idxs[0]]
            batch = self.to_seg_input(batch)
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            logits = seg(batch, mode='tensor')
            for i, chunk in zip(idxs, logits.split([imgs[i].shape[0] for i in idxs])):
                out[i] = chunk
        return out

    def perceptual_distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distance between M's outputs for a generated image and for the real one (``target`` is constant)."""
        if self.distance == 'mse_instance_norm':
            return F.mse_loss(F.instance_norm(pred), F.instance_norm(target))
        return F.l1_loss(pred, target)

    def _get_perceptual_loss(self, outputs: dict) -> Dict[str, torch.Tensor]:
        terms = []  # (loss name, weight, source domain, generated image)
        for src in self._reachable_domains:
            tgt = self._get_opposite_domain(src)
            if self.lambda_per != 0:
                terms.append((f'loss_per_{src}', self.lambda_per, src, outputs[f'fake_{tgt}']))
            if self.lambda_per_recon != 0:
                terms.append((f'loss_per_recon_{src}', self.lambda_per_recon, src, outputs[f'cycle_{src}']))
        reals = [outputs[f'real_{d}'] for d in self._reachable_domains]
        fakes = [t[3] for t in terms]
        if self.batch_mode == 'split':
            with torch.no_grad():
                real_logits = self.seg_logits(reals)
            fake_logits = self.seg_logits(fakes)
        elif self.batch_mode == 'joint':
            logits = self.seg_logits(reals + fakes)
            real_logits = [x.detach() for x in logits[:len(reals)]]
            fake_logits = logits[len(reals):]
        else:
            with torch.no_grad():
                real_logits = [self.seg_logits([x])[0] for x in reals]
            fake_logits = [self.seg_logits([x])[0] for x in fakes]
        real_of = dict(zip(self._reachable_domains, real_logits))
        return {name: weight * self.perceptual_distance(pred, real_of[src])
                for (name, weight, src, _), pred in zip(terms, fake_logits)}

    def _get_gen_loss(self, outputs):
        """MMagic's generator loss plus the perceptual and structure terms, logged by name (``loss_per_*``,
        ``loss_struct_*``)."""
        loss_g, log_vars_g = super()._get_gen_loss(outputs)
        terms = self._get_perceptual_loss(outputs) if self.with_perceptual else {}
        terms.update(structure_losses(outputs, self._reachable_domains, self._get_opposite_domain,
                                      self.structure_weight, self.structure_scale))
        if not terms:
            return loss_g, log_vars_g
        loss_more, log_vars_more = self.parse_losses(terms)
        log_vars_more.pop('loss')
        log_vars_g.update(log_vars_more)
        log_vars_g['loss'] = log_vars_g['loss'] + loss_more.detach()
        return loss_g + loss_more, log_vars_g

    # ------------------------------------------------------------------ training step
    def train_step(self, data: dict, optim_wrapper):
        """One F step. ``update_order='discriminators_first'`` is MMagic's :meth:`CycleGAN.train_step` itself;
        ``'generators_first'`` follows pytorch-CycleGAN's ``optimize_parameters`` (the BDL release): forward both
        cycles, update the generators (D frozen), then update the discriminators."""
        if self.update_order == 'discriminators_first':
            return super().train_step(data, optim_wrapper)
        data = self.data_preprocessor(data, True)
        inputs_dict = data['inputs']
        gen_optim, disc_optim = optim_wrapper['generators'], optim_wrapper['discriminators']
        outputs, log_vars = dict(), dict()
        with gen_optim.optim_context(self.generators):
            for target_domain in self._reachable_domains:  # the forward of MMagic's train_step
                source_domain = self.get_other_domains(target_domain)[0]
                results = self(inputs_dict[f'img_{source_domain}'], test_mode=False, target_domain=target_domain)
                outputs[f'real_{source_domain}'] = results['source']
                outputs[f'fake_{target_domain}'] = results['target']
                results = self(results['target'], test_mode=False, target_domain=source_domain)
                outputs[f'cycle_{source_domain}'] = results['target']
            set_requires_grad(self.discriminators, False)
            try:
                loss_g, log_vars_g = self._get_gen_loss(outputs)
                gen_optim.update_params(loss_g)
            finally:
                set_requires_grad(self.discriminators, True)
        log_vars.update(log_vars_g)
        with disc_optim.optim_context(self.discriminators):
            loss_d, log_vars_d = self._get_disc_loss(outputs)  # fakes detached inside, through the image pool
            disc_optim.update_params(loss_d)
        log_vars.update(log_vars_d)
        return log_vars
