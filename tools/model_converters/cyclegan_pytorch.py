# Copyright (c) bdl_mm contributors.
"""Convert a CycleGAN trained with the PyTorch CycleGAN code (junyanz/pytorch-CycleGAN-and-pix2pix, which the BDL
release's translation model is built on) into a checkpoint of MMagic's ``CycleGAN`` / bdl_mm's
``PerceptualCycleGAN``.

    python tools/model_converters/cyclegan_pytorch.py SRC DST [--epoch latest] [--domain-a source]
        [--domain-b target] [--config configs/translation/...py]

SRC is either the CycleGAN checkpoint folder holding ``<epoch>_net_G_A.pth``, ``<epoch>_net_G_B.pth`` and,
optionally, ``<epoch>_net_D_A.pth``, ``<epoch>_net_D_B.pth``, or one file with a dict of those state dicts under
``netG_A``, ``netG_B``, ``netD_A``, ``netD_B`` (or ``G_A``, ...).

Direction (pytorch-CycleGAN naming): ``G_A`` maps A -> B, ``D_A`` judges B images; MMagic keys generators and
discriminators by the domain they produce/judge. So with A = ``--domain-a`` (the source, GTA5/SYNTHIA) and
B = ``--domain-b`` (Cityscapes): ``netG_A -> generators.<B>``, ``netG_B -> generators.<A>``,
``netD_A -> discriminators.<B>``, ``netD_B -> discriminators.<A>``.

Layers map by position (both codes build the same stack): pytorch-CycleGAN ``ResnetGenerator`` ``model.<i>``
convs (``model.<i>.conv_block.<j>`` inside residual blocks) -> MMagic ``ResnetGenerator`` ``model.<k>.conv``
(``model.<k>.block.<0|1>.conv``, ``block.2`` with dropout); ``NLayerDiscriminator`` convs -> MMagic
``PatchDiscriminator`` ``model.<k>.conv`` (last: ``model.<k>``). Instance-norm running statistics (saved by
``track_running_stats=True`` code such as the BDL release) are dropped: MMagic's IN keeps none and, like
pytorch-CycleGAN at test time, normalises with the image's own statistics. Any other key, or a norm with
parameters (batch norm), stops the conversion with its name. ``--config`` checks the result loads strictly into
that config's model. The output ``{'state_dict', 'meta'}`` is written atomically.
"""
import argparse
import os
import os.path as osp
import re
import sys
import tempfile
from collections import OrderedDict

import torch

NETS = ('G_A', 'G_B', 'D_A', 'D_B')
NORM_STATS = ('running_mean', 'running_var', 'num_batches_tracked')
_TOP = re.compile(r'^model\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$')
_BLOCK = re.compile(r'^model\.(\d+)\.conv_block\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$')


def _strip_module(state_dict):
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in state_dict.items())


def _conv_layers(state_dict, net):
    """Split a pytorch-CycleGAN state dict into conv layers {index: {param: tensor}} and residual blocks
    {index: {inner index: {param: tensor}}}, checking every key."""
    convs, blocks = {}, {}
    for key, value in state_dict.items():
        m_top, m_block = _TOP.match(key), _BLOCK.match(key)
        if m_top:
            idx, param, target = int(m_top.group(1)), m_top.group(2), convs.setdefault(int(m_top.group(1)), {})
        elif m_block:
            idx, param = int(m_block.group(1)), m_block.group(3)
            target = blocks.setdefault(idx, {}).setdefault(int(m_block.group(2)), {})
        else:
            raise KeyError(f'{net}: unexpected key {key!r} (not a pytorch-CycleGAN ResnetGenerator or '
                           'NLayerDiscriminator)')
        target[param] = value
    conv_of = {}
    for idx, params in convs.items():
        if 'weight' in params and params['weight'].dim() == 4:
            conv_of[idx] = params
        elif set(params) - set(NORM_STATS):
            raise ValueError(f'{net}: layer model.{idx} is a norm with parameters {sorted(params)}; only '
                             'instance norm without affine parameters (pytorch-CycleGAN --norm instance) is supported')
    block_of = {}
    for idx, inner in blocks.items():
        inner_convs = {}
        for j, params in inner.items():
            if 'weight' in params and params['weight'].dim() == 4:
                inner_convs[j] = params
            elif set(params) - set(NORM_STATS):
                raise ValueError(f'{net}: layer model.{idx}.conv_block.{j} is a norm with parameters; only instance '
                                 'norm without affine parameters is supported')
        if len(inner_convs) != 2:
            raise ValueError(f'{net}: residual block model.{idx} has {len(inner_convs)} convs, expected 2')
        block_of[idx] = inner_convs
    return conv_of, block_of


def convert_generator(state_dict, net='G'):
    """pytorch-CycleGAN ``ResnetGenerator`` state dict -> MMagic ``ResnetGenerator`` state dict."""
    conv_of, block_of = _conv_layers(_strip_module(state_dict), net)
    out = OrderedDict()
    for k, idx in enumerate(sorted(set(conv_of) | set(block_of))):
        if idx in conv_of:
            for param, value in conv_of[idx].items():
                out[f'model.{k}.conv.{param}'] = value
        else:
            c0, c1 = sorted(block_of[idx])
            # conv_block: [pad], conv, norm, relu, [dropout], [pad], conv, norm; pad layers exist unless 'zero'
            dropout = (c1 - c0) == (5 if c0 == 1 else 4)
            for j, c in ((0, c0), (2 if dropout else 1, c1)):
                for param, value in block_of[idx][c].items():
                    out[f'model.{k}.block.{j}.conv.{param}'] = value
    return out


def convert_discriminator(state_dict, net='D'):
    """pytorch-CycleGAN ``NLayerDiscriminator`` state dict -> MMagic ``PatchDiscriminator`` state dict."""
    conv_of, block_of = _conv_layers(_strip_module(state_dict), net)
    if block_of:
        raise ValueError(f'{net}: has residual blocks; not an NLayerDiscriminator')
    order = sorted(conv_of)
    out = OrderedDict()
    for k, idx in enumerate(order):
        prefix = f'model.{k}.' if k == len(order) - 1 else f'model.{k}.conv.'
        for param, value in conv_of[idx].items():
            out[prefix + param] = value
    return out


def convert_cyclegan(nets, domain_a='source', domain_b='target'):
    """Convert ``dict(G_A=sd, G_B=sd[, D_A=sd, D_B=sd])`` into an MMagic CycleGAN state dict (see module doc)."""
    missing = [n for n in ('G_A', 'G_B') if n not in nets]
    if missing:
        raise KeyError(f'missing generator(s) {missing}; got {sorted(nets)}')
    produced = dict(G_A=domain_b, G_B=domain_a, D_A=domain_b, D_B=domain_a)
    out = OrderedDict()
    for name in NETS:
        if name not in nets:
            continue
        if name.startswith('G'):
            converted, prefix = convert_generator(nets[name], name), f'generators.{produced[name]}.'
        else:
            converted, prefix = convert_discriminator(nets[name], name), f'discriminators.{produced[name]}.'
        out.update((prefix + k, v) for k, v in converted.items())
    return out


def _torch_load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def read_nets(src, epoch='latest'):
    """Read the networks of a pytorch-CycleGAN checkpoint folder or combined file (see module doc)."""
    nets = {}
    if osp.isdir(src):
        for name in NETS:
            path = osp.join(src, f'{epoch}_net_{name}.pth')
            if osp.isfile(path):
                nets[name] = _torch_load(path)
        if not nets:
            raise FileNotFoundError(f'no {epoch}_net_{{G_A,G_B,D_A,D_B}}.pth in {src}')
    elif osp.isfile(src):
        ckpt = _torch_load(src)
        for name in NETS:
            for key in (f'net{name}', name, f'net_{name}'):
                if key in ckpt:
                    nets[name] = ckpt[key]
        if not nets:
            raise KeyError(f'{src} holds none of netG_A, netG_B, netD_A, netD_B (keys: {sorted(ckpt)[:8]})')
    else:
        raise FileNotFoundError(f'{src} does not exist')
    return nets


def save_atomic(obj, dst):
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(dst), suffix='.part')
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, dst)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='pytorch-CycleGAN checkpoint -> MMagic CycleGAN checkpoint')
    parser.add_argument('src', help='checkpoint folder (<epoch>_net_G_A.pth ...) or one file of state dicts')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--epoch', default='latest', help='epoch prefix of the files in a folder')
    parser.add_argument('--domain-a', default='source', help='MMagic name of pytorch-CycleGAN domain A')
    parser.add_argument('--domain-b', default='target', help='MMagic name of pytorch-CycleGAN domain B')
    parser.add_argument('--config', default=None, help='translation config whose model must load the result')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    nets = read_nets(args.src, args.epoch)
    state_dict = convert_cyclegan(nets, args.domain_a, args.domain_b)
    if args.config is not None:
        sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
        from bdl_mm.apis.translate import load_translator
        model = load_translator(args.config)
        own = model.state_dict()
        if 'D_A' not in nets:  # generators only: check those
            own = OrderedDict((k, v) for k, v in own.items() if k.startswith('generators.'))
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        wrong = [k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape)]
        if missing or unexpected or wrong:
            raise SystemExit(f'error: converted weights do not fit {args.config}: missing {missing[:5]}, '
                             f'unexpected {unexpected[:5]}, shape mismatch {sorted(wrong)[:5]}')
    meta = dict(converted_from=osp.abspath(args.src), epoch=args.epoch, domain_a=args.domain_a,
                domain_b=args.domain_b, nets=sorted(nets))
    save_atomic(dict(state_dict=state_dict, meta=meta), args.dst)
    print(f'{args.dst}: {len(state_dict)} tensors from {", ".join("net" + n for n in sorted(nets))} '
          f'(A={args.domain_a}, B={args.domain_b})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
