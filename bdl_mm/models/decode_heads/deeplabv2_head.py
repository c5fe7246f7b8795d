# Copyright (c) bdl_mm contributors.
import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """The DeepLabV2 classifier of BDL's segmentation model M (the release's ``Classifier_Module``).

    As designed, the logits are the SUM of parallel 3x3 convolutions (with bias) on the last backbone feature,
    one per dilation (padding = dilation): 6, 12, 18, 24. As PUBLISHED, the release that trained the paper's
    models and the released checkpoints (liyunsheng13/BDL 7505c2e, 2019-05-02; still so in its
    ``cyclegan/deeplab.py``) returns inside the summing loop, so only the first TWO branches (6 and 12) are
    summed; branches 3 and 4 exist, are saved in every checkpoint, but stay at their N(0, 0.01) initialisation
    (fixed upstream in ``model/deeplab.py`` on 2020-07-27, 37af0e7). ``summed_branches`` chooses:
    ``2`` is the published classifier (the flagship configs), ``None`` sums every branch (DeepLabV2 as designed).
    Branches that are not summed are kept (so release checkpoints load completely and round-trip) but take no
    gradient (``requires_grad=False``: no optimiser update, and DDP does not wait for them).

    There is no dropout and no 1x1 ``conv_seg``: the parent's ``conv_seg`` is removed so that the head holds no
    unused parameters. MMSeg's ``ASPPHead`` is not reused because it is a different module (concatenation + 3x3
    bottleneck + BN, not a sum of classifiers). Weights are drawn from N(0, 0.01) in the constructor, as in the
    release; biases keep PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as in the release
    (``bias_init='pytorch'``) or start at 0 (``bias_init='zero'``). Logits come out at the feature resolution
    (1/8); ``loss_by_feat``/``predict_by_feat`` upsample them bilinearly with ``align_corners=True`` (release).

    Module names follow the release (``conv2d_list.N``), so its ``layer5.conv2d_list.N.*`` keys convert
    to ``decode_head.conv2d_list.N.*``.

    Args:
        in_channels (int): Channels of the backbone feature (2048 for ResNet-101).
        dilations (Sequence[int]): Dilation (= padding) of each branch. Default: (6, 12, 18, 24).
        summed_branches (int, optional): How many of the first branches are summed. ``2``: the published
            release; ``None`` (default): all of them (as designed).
        bias_init (str): ``'pytorch'`` (release) or ``'zero'``.
        align_corners (bool): Default: True (release).
        init_cfg (dict, optional): Extra mmengine initialisation; default None (the constructor initialises).
        **kwargs: ``num_classes``, ``loss_decode``, ``ignore_index``, ``in_index`` ... of
            :class:`BaseDecodeHead`. ``channels`` and ``dropout_ratio`` are not accepted (unused here).
    """

    def __init__(self,
                 in_channels,
                 dilations=(6, 12, 18, 24),
                 summed_branches=None,
                 bias_init='pytorch',
                 align_corners=True,
                 init_cfg=None,
                 **kwargs):
        for unused in ('channels', 'dropout_ratio', 'input_transform'):
            if unused in kwargs:
                raise ValueError(f'DeepLabV2Head does not use `{unused}` (got {kwargs[unused]!r}): its classifier '
                                 f'is the sum of dilated 3x3 convs on one feature map; remove it from the config')
        if not isinstance(in_channels, int):
            raise TypeError(f'DeepLabV2Head takes one feature map: in_channels must be an int, got {in_channels!r}')
        if len(dilations) == 0:
            raise ValueError('DeepLabV2Head needs at least one dilation, got an empty `dilations`')
        if summed_branches is not None and not (isinstance(summed_branches, int)
                                                and 1 <= summed_branches <= len(dilations)):
            raise ValueError(f'DeepLabV2Head: summed_branches must be None or an int in [1, {len(dilations)}], '
                             f'got {summed_branches!r}')
        if bias_init not in ('pytorch', 'zero'):
            raise ValueError(f"DeepLabV2Head: bias_init must be 'pytorch' or 'zero', got {bias_init!r}")
        super().__init__(
            in_channels, in_channels, dropout_ratio=0, align_corners=align_corners, init_cfg=init_cfg, **kwargs)
        del self.conv_seg  # replaced by the sum of the dilated convs below
        self.dilations = tuple(dilations)
        self.summed_branches = len(self.dilations) if summed_branches is None else summed_branches
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, self.out_channels, kernel_size=3, padding=d, dilation=d, bias=True)
            for d in self.dilations)
        # Initialised in the constructor, as the release does (so the head is right where no
        # `init_weights()` is called); the bias keeps nn.Conv2d's default unless bias_init='zero'.
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0, 0.01)
            if bias_init == 'zero':
                nn.init.zeros_(conv.bias)
        for conv in self.conv2d_list[self.summed_branches:]:
            conv.requires_grad_(False)  # kept at their initialisation, as in the published release

    def cls_seg(self, feat):
        """Sum of the first ``summed_branches`` dilated 3x3 classifiers."""
        out = self.conv2d_list[0](feat)
        for conv in self.conv2d_list[1:self.summed_branches]:
            out = out + conv(feat)
        return out

    def forward(self, inputs):
        """Logits at the resolution of the selected backbone feature."""
        return self.cls_seg(self._transform_inputs(inputs))


def _deeplab_heads(node, path=''):
    """(dotted path, config) of every DeepLabV2Head in a model config."""
    if isinstance(node, dict):
        if str(node.get('type', '')).split('.')[-1] == 'DeepLabV2Head':
            yield path, node
        for key, value in node.items():
            yield from _deeplab_heads(value, f'{path}.{key}' if path else str(key))


def check_classifier_checkpoint(model_cfg, checkpoint: str, what: str = 'load_from') -> None:
    """Refuse, in one line naming the keys, a checkpoint whose DeepLab classifier does not fit the config's.

    Checked before any training: the number of branches (``decode_head.conv2d_list.N``) must equal the number of
    ``dilations``, and a checkpoint converted by ``tools/model_converters/bdl_release.py`` (``meta.classifier``)
    must be loaded with its layout: ``'published'`` (branches 3-4 never trained) with ``summed_branches=2``,
    ``'designed'`` (all branches trained) with every branch summed. A checkpoint without classifier keys (an
    ImageNet initialisation) or without that meta (this project's own checkpoints) passes.
    """
    heads = list(_deeplab_heads(model_cfg))
    if not heads or checkpoint is None:
        return
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(checkpoint, map_location='cpu', logger='current')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    keys = sorted(k for k in state if 'decode_head.conv2d_list.' in k)
    if not keys:
        return
    branches = sorted({int(k.split('decode_head.conv2d_list.')[1].split('.')[0]) for k in keys})
    layout = (meta or {}).get('classifier')
    for path, head in heads:
        n_cfg = len(head.get('dilations', (6, 12, 18, 24)))
        summed = head.get('summed_branches') or n_cfg
        if len(branches) != n_cfg:
            raise ValueError(f'{what} {checkpoint}: its classifier has {len(branches)} branches ({keys[0]} ... '
                             f'{keys[-1]}) but {path}.dilations has {n_cfg}')
        if layout == 'published' and summed != 2:
            raise ValueError(
                f'{what} {checkpoint} holds the published classifier '
                f'(decode_head.conv2d_list.2-{n_cfg - 1}.weight/bias never trained) but {path}.summed_branches '
                f'sums {summed}: set {path}.summed_branches=2, or convert with --classifier designed if those '
                'branches were trained')
        if layout == 'designed' and summed != n_cfg:
            raise ValueError(
                f'{what} {checkpoint} holds a trained {n_cfg}-branch classifier, but {path}.summed_branches={summed} '
                f'ignores decode_head.conv2d_list.{summed}-{n_cfg - 1}.weight/bias: set {path}.summed_branches=None')
