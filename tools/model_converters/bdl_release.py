"""Convert the BDL authors' released models to bdl_mm (mmengine) checkpoints.

Three kinds of release file, recognised from their keys (or named with ``--model``):

- ``deeplab``: DeepLabV2-R101 (``model/deeplab.py``): ``conv1.``, ``bn1.``, ``layerN.i.`` -> ``backbone.<same>``;
  ``layer5.conv2d_list.N.`` -> ``decode_head.conv2d_list.N.``. For ``configs/_base_/models/deeplabv2_r101.py``.
- ``fcn8s``: VGG16-FCN8s (``model/fcn8s.py``): ``conv1_1.`` ... ``conv5_3.``, ``fc6.``, ``fc7.`` -> ``backbone.<same>``;
  ``score_fr.``, ``score_pool3.``, ``score_pool4.``, ``upscore2.``, ``upscore_pool4.``, ``upscore8.`` ->
  ``decode_head.<same>``. For ``configs/_base_/models/fcn8s_vgg16.py``.
- ``discriminator``: D_M (``model/discriminator.py``, the ``*_D.pth`` files): ``conv1.`` ... ``conv4.``,
  ``classifier.`` -> unchanged (``OutputDiscriminator``).

DeepLab classifier (``layer5.conv2d_list.0-3``). The release that trained the paper's models and the released
checkpoints sums only branches 1-2 (``Classifier_Module.forward`` returns inside its loop); branches 3-4 are saved
but stay at their initialisation: weights N(0, 0.01), biases PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
``--classifier auto`` (default) recognises such a file (``published``: every later branch still looks like that
initialisation) from a post-2020 checkpoint whose branches 3-4 were trained (``designed``: the upstream fix of
2020-07-27 sums all four); ``--classifier published|designed`` states it. All four branches are kept either way
(the published layout ignores 3-4 through ``decode_head.summed_branches=2``); the choice is recorded in the
output's ``meta`` (``classifier``, ``summed_branches``) and checked against the config that loads it.

Every key must be recognised: an unknown key stops the conversion naming it (nothing is dropped). BatchNorm
layers saved without ``num_batches_tracked`` get it (0). ``--prefix`` prepends a string to every output key
(e.g. ``segmentor.`` or ``discriminator.`` for a ``BDLSegmentor``). The output is written atomically as
``{'state_dict': ..., 'meta': ...}``, loadable with ``mmengine.runner.load_checkpoint`` / ``load_from``.

Usage: python tools/model_converters/bdl_release.py SRC DST [--model {auto,deeplab,fcn8s,discriminator}]
           [--classifier {auto,published,designed}] [--prefix segmentor.]
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


CLASSIFIER_BRANCH = re.compile(r'(?:.*\.)?layer5\.conv2d_list\.(\d+)\.(weight|bias)')
PUBLISHED_BRANCHES = 2  # branches the published release sums


def _branch_at_init(weight, bias):
    """Whether one classifier conv still looks as the release initialised it: weights N(0, 0.01) (sample mean
    and std within 5 standard errors of 0 and 0.01, at least 2e-4: 1.2e-5 for a full 19-class head, whose trained
    weights move further, if only through weight decay), biases within PyTorch's default bound 1/sqrt(fan_in)."""
    w = weight.double()
    n, fan_in = w.numel(), w[0].numel()
    tol_std, tol_mean = max(2e-4, 5 * 0.01 / (2 * n) ** 0.5), max(2e-4, 5 * 0.01 / n ** 0.5)
    return (n >= 1000 and abs(w.std().item() - 0.01) < tol_std and abs(w.mean().item()) < tol_mean
            and (bias is None or bias.abs().max().item() <= 1.0 / fan_in ** 0.5 * (1 + 1e-6)))


def detect_classifier(state_dict):
    """``'published'`` if every classifier branch after the first two is still at its initialisation, else
    ``'designed'`` (None for a state dict without the DeepLab classifier)."""
    branches = {}
    for key, value in state_dict.items():
        m = CLASSIFIER_BRANCH.fullmatch(key)
        if m:
            branches.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not branches:
        return None
    later = [b for i, b in sorted(branches.items()) if i >= PUBLISHED_BRANCHES]
    if later and all(_branch_at_init(b['weight'], b.get('bias')) for b in later):
        return 'published'
    return 'designed'


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
    parser.add_argument('--classifier', default='auto', choices=['auto', 'published', 'designed'],
                        help='DeepLab classifier layout: published (release 2019: branches 1-2 summed, 3-4 at '
                        'their init), designed (all four summed, upstream fix 2020), auto (default: from the '
                        'values of branches 3-4)')
    args = parser.parse_args(argv)
    try:
        src = load_release(args.src)
        model = detect_model(src) if args.model == 'auto' else args.model
        state_dict = convert(src, model=model, prefix=args.prefix)
    except (OSError, KeyError, ValueError) as e:
        raise SystemExit(f'error: {e.args[0] if isinstance(e, KeyError) else e}') from None
    meta = dict(converted_from=osp.basename(args.src), converter='tools/model_converters/bdl_release.py', model=model)
    report = ''
    if model == 'deeplab':
        found = detect_classifier(src)
        layout = found if args.classifier == 'auto' else args.classifier
        n = sum(1 for k in src if CLASSIFIER_BRANCH.fullmatch(k) and k.endswith('.weight'))
        meta.update(classifier=layout, summed_branches=PUBLISHED_BRANCHES if layout == 'published' else None)
        how = 'recognised from its values' if args.classifier == 'auto' else f'--classifier {layout}'
        if layout == 'published':
            report = (f'classifier: published ({how}): branches 1-{PUBLISHED_BRANCHES} summed; branches '
                      f'{PUBLISHED_BRANCHES + 1}-{n} kept at their initialisation, not summed '
                      f'(decode_head.summed_branches={PUBLISHED_BRANCHES}, the flagship configs)')
        else:
            report = (f'classifier: designed ({how}): all {n} branches summed '
                      '(load with decode_head.summed_branches=None)')
        if args.classifier != 'auto' and found != layout:
            report += f'; warning: its values look {found}'
    save_checkpoint(state_dict, args.dst, meta)
    print(f'{args.src} ({model}, {len(src)} keys) -> {args.dst} ({len(state_dict)} keys: all kept, none dropped)')
    if report:
        print(report)


if __name__ == '__main__':
    main()
