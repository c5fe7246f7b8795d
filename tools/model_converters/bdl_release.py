"""Convert the BDL authors' released models to bdl_mm (mmengine) checkpoints.

Three kinds of release file, recognised from their keys (or named with ``--model``):

- ``deeplab``: DeepLabV2-R101 (``model/deeplab.py``): ``conv1.``, ``bn1.``, ``layerN.i.`` -> ``backbone.<same>``;
  ``layer5.conv2d_list.N.`` -> ``decode_head.conv2d_list.N.``. For ``configs/_base_/models/deeplabv2_r101.py``.
- ``fcn8s``: VGG16-FCN8s (``model/fcn8s.py``): ``conv1_1.`` ... ``conv5_3.``, ``fc6.``, ``fc7.`` -> ``backbone.<same>``;
  ``score_fr.``, ``score_pool3.``, ``score_pool4.``, ``upscore2.``, ``upscore_pool4.``, ``upscore8.`` ->
  ``decode_head.<same>``. For ``configs/_base_/models/fcn8s_vgg16.py``.
- ``discriminator``: D_M (``model/discriminator.py``, the ``*_D.pth`` files): ``conv1.`` ... ``conv4.``,
  ``classifier.`` -> unchanged (``OutputDiscriminator``).

Every key must be recognised: an unknown key stops the conversion naming it (nothing is dropped). BatchNorm
layers saved without ``num_batches_tracked`` get it (0). ``--prefix`` prepends a string to every output key
(e.g. ``segmentor.`` or ``discriminator.`` for a ``BDLSegmentor``). The output is written atomically as
``{'state_dict': ..., 'meta': ...}``, loadable with ``mmengine.runner.load_checkpoint`` / ``load_from``.

Usage: python tools/model_converters/bdl_release.py SRC DST [--model {auto,deeplab,fcn8s,discriminator}]
"""
import argparse
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict

import torch

BN_STATS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')

# release key regex -> our key template (``\g<0>`` is the whole release key)
DEEPLAB_RULES = (
    (re.compile(r'(conv1|bn1|layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[01]))\.'
                r'(weight|bias|running_mean|running_var|num_batches_tracked)'), r'backbone.\g<0>'),
    (re.compile(r'layer5\.(conv2d_list\.\d+\.(weight|bias))'), r'decode_head.\1'),
)
FCN8S_RULES = (
    (re.compile(r'(conv[12]_[12]|conv[345]_[123]|fc6|fc7)\.(weight|bias)'), r'backbone.\g<0>'),
    (re.compile(r'(score_fr|score_pool3|score_pool4)\.(weight|bias)'), r'decode_head.\g<0>'),
    (re.compile(r'(upscore2|upscore_pool4|upscore8)\.weight'), r'decode_head.\g<0>'),
)
DISCRIMINATOR_RULES = ((re.compile(r'(conv[1-4]|classifier)\.(weight|bias)'), r'\g<0>'), )
RULES = dict(deeplab=DEEPLAB_RULES, fcn8s=FCN8S_RULES, discriminator=DISCRIMINATOR_RULES)


def detect_model(state_dict):
    """Tell which release model a state dict belongs to, from its keys."""
    keys = set(state_dict)
    if 'conv1_1.weight' in keys:
        return 'fcn8s'
    if 'classifier.weight' in keys:
        return 'discriminator'
    if 'conv1.weight' in keys and any(k.startswith('layer1.') for k in keys):
        return 'deeplab'
    raise ValueError(f'cannot tell which BDL release model has the keys {sorted(keys)[:5]}...: expected '
                     f'`conv1_1.weight` (VGG16-FCN8s), `classifier.weight` (discriminator) or `conv1.weight` + '
                     f'`layer1.*` (DeepLabV2); pass --model')


def add_num_batches_tracked(state_dict):
    """Give every BatchNorm (found by its ``running_mean``) a ``num_batches_tracked`` if it has none."""
    out = OrderedDict()
    for key, value in state_dict.items():
        out[key] = value
        if key.endswith('.running_mean'):
            nbt = key[:-len('running_mean')] + 'num_batches_tracked'
            if nbt not in state_dict:
                out[nbt] = torch.tensor(0, dtype=torch.long)
    return out


def convert(state_dict, model='auto', prefix=''):
    """Map a release state dict to bdl_mm keys. Raises ``KeyError`` naming the first unknown key."""
    if model == 'auto':
        model = detect_model(state_dict)
    if model not in RULES:
        raise ValueError(f'unknown --model {model!r}; choose from auto, {", ".join(RULES)}')
    out = OrderedDict()
    for key, value in state_dict.items():
        for pattern, template in RULES[model]:
            match = pattern.fullmatch(key)
            if match:
                out[prefix + match.expand(template)] = value
                break
        else:
            raise KeyError(f'unknown key {key!r} in a BDL release {model} checkpoint; nothing was written')
    return add_num_batches_tracked(out)


def load_release(path):
    """Load a release file: a plain state dict (or one under ``state_dict``), tensors only."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'no such checkpoint: {path}')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict'), dict):
        ckpt = ckpt['state_dict']
    if not isinstance(ckpt, dict) or not all(torch.is_tensor(v) for v in ckpt.values()):
        raise ValueError(f'{path} is not a state dict of tensors')
    return ckpt


def save_checkpoint(state_dict, dst, meta):
    """Write ``{'state_dict', 'meta'}`` atomically (temporary file in the same folder, then rename)."""
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(dst) + '.', suffix='.tmp')
    os.close(fd)
    try:
        torch.save(dict(state_dict=state_dict, meta=meta), tmp)
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description='Convert a BDL release model (DeepLabV2, VGG16-FCN8s or '
                                     'discriminator) to a bdl_mm checkpoint')
    parser.add_argument('src', help='release .pth file')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument('--model', default='auto', choices=['auto', *RULES], help='release model (default: from keys)')
    parser.add_argument('--prefix', default='', help='prepended to every output key, e.g. "segmentor."')
    args = parser.parse_args(argv)
    try:
        src = load_release(args.src)
        model = detect_model(src) if args.model == 'auto' else args.model
        state_dict = convert(src, model=model, prefix=args.prefix)
    except (OSError, KeyError, ValueError) as e:
        raise SystemExit(f'error: {e.args[0] if isinstance(e, KeyError) else e}') from None
    meta = dict(converted_from=osp.basename(args.src), converter='tools/model_converters/bdl_release.py', model=model)
    save_checkpoint(state_dict, args.dst, meta)
    print(f'{args.src} ({model}, {len(src)} keys) -> {args.dst} ({len(state_dict)} keys)')


if __name__ == '__main__':
    main()
