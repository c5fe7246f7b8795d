"""Convert the DeepLab-ResNet101 initialisation used by BDL (``--init-weights``, e.g.
``DeepLab_resnet_pretrained_init-f81d91e8.pth``) to a bdl_mm (mmengine) checkpoint.

Its keys carry a ``Scale.`` prefix: ``Scale.conv1.weight``, ``Scale.bn1.*``, ``Scale.layer1.0.conv1.weight``,
``Scale.layerN.i.downsample.{0,1}.*`` -> ``backbone.<same without Scale.>``; the classifier
``Scale.layer5.conv2d_list.N.*`` -> ``decode_head.conv2d_list.N.*``. The release discards that classifier when
it trains a 19-class model (``model/deeplab.py``: ``if not num_classes == 19 or not i_parts[1] == 'layer5'``):
``--drop-classifier`` does the same, and says so. Every other key must be recognised: an unknown key stops the
conversion naming it. BatchNorm layers saved without ``num_batches_tracked`` get it (0). The output
(``{'state_dict': ..., 'meta': ...}``, written atomically) is meant for
``configs/_base_/models/deeplabv2_r101.py`` via ``load_from`` or an ``init_cfg`` of type ``Pretrained``.

``--prefix segmentor.`` gives the keys of a ``BDLSegmentor`` (the ``configs/bdl_*.py`` runs).

Usage: python tools/model_converters/deeplab_resnet101_init.py SRC DST [--drop-classifier] [--prefix segmentor.]
"""
import argparse
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict

import torch

PREFIX = 'Scale.'
BACKBONE = re.compile(r'(conv1|bn1|layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[01]))\.'
                      r'(weight|bias|running_mean|running_var|num_batches_tracked)')
CLASSIFIER = re.compile(r'layer5\.(conv2d_list\.\d+\.(weight|bias))')


def convert(state_dict, drop_classifier=False, prefix=''):
    """Map ``Scale.*`` keys to ``backbone.*`` / ``decode_head.*``. Raises ``KeyError`` naming an unknown key.

    Returns the converted state dict, ``prefix`` prepended to every key; with ``drop_classifier`` the
    ``Scale.layer5.*`` keys are left out.
    """
    out = OrderedDict()
    for key, value in state_dict.items():
        if not key.startswith(PREFIX):
            raise KeyError(f'unknown key {key!r} in a DeepLab-ResNet101 initialisation (expected the prefix '
                           f'{PREFIX!r}); nothing was written')
        name = key[len(PREFIX):]
        if BACKBONE.fullmatch(name):
            out['backbone.' + name] = value
            continue
        match = CLASSIFIER.fullmatch(name)
        if match:
            if not drop_classifier:
                out['decode_head.' + match.group(1)] = value
            continue
        raise KeyError(f'unknown key {key!r} in a DeepLab-ResNet101 initialisation; nothing was written')
    # BatchNorm state without num_batches_tracked (saved by old PyTorch): add it so strict loading works.
    for key in [k for k in out if k.endswith('.running_mean')]:
        out.setdefault(key[:-len('running_mean')] + 'num_batches_tracked', torch.tensor(0, dtype=torch.long))
    return OrderedDict((prefix + k, v) for k, v in out.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description='Convert the DeepLab-ResNet101 initialisation (Scale.* keys) '
                                     'to a bdl_mm checkpoint')
    parser.add_argument('src', help='initialisation .pth file')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument('--drop-classifier', action='store_true',
                        help='leave out Scale.layer5.* (its classes are not the target classes), as the release '
                        'does for 19 classes')
    parser.add_argument('--prefix', default='',
                        help='prepended to every output key: "segmentor." for the BDL configs (a BDLSegmentor)')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        raise SystemExit(f'error: no such checkpoint: {args.src}')
    src = torch.load(args.src, map_location='cpu', weights_only=True)
    if isinstance(src, dict) and isinstance(src.get('state_dict'), dict):
        src = src['state_dict']
    if not isinstance(src, dict) or not all(torch.is_tensor(v) for v in src.values()):
        raise SystemExit(f'error: {args.src} is not a state dict of tensors')
    try:
        state_dict = convert(src, drop_classifier=args.drop_classifier, prefix=args.prefix)
    except KeyError as e:
        raise SystemExit(f'error: {e.args[0]}') from None
    dropped = sorted(k for k in src if CLASSIFIER.fullmatch(k[len(PREFIX):])) if args.drop_classifier else []
    if dropped:
        print(f'--drop-classifier: left out {len(dropped)} keys: {", ".join(dropped)}')

    folder = osp.dirname(osp.abspath(args.dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(args.dst) + '.', suffix='.tmp')
    os.close(fd)
    meta = dict(converted_from=osp.basename(args.src), converter='tools/model_converters/deeplab_resnet101_init.py',
                drop_classifier=args.drop_classifier, prefix=args.prefix)
    try:
        torch.save(dict(state_dict=state_dict, meta=meta), tmp)
        os.replace(tmp, args.dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    print(f'{args.src} ({len(src)} keys) -> {args.dst} ({len(state_dict)} keys)')


if __name__ == '__main__':
    main()
