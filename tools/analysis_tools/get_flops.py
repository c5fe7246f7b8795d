# Copyright (c) bdl_mm contributors.
"""FLOPs and parameters of M (the segmentation model) of a config at an input size, with mmengine's
``get_model_complexity_info`` (as MMSegmentation's ``tools/analysis_tools/get_flops.py``).

    python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] [--cfg-options key=value ...] [--json OUT.json]

M is ``model.segmentor`` of a BDL config (or ``model`` of a plain segmentor config); the count covers its forward
pass (backbone and decode head, ``mode='tensor'``) on one image after the data preprocessor. The input size defaults
to the test pipeline's ``Resize`` scale (e.g. 512x1024 for Cityscapes in the release). FLOPs are counted as
mmengine's FlopAnalyzer does (one multiply-add = one FLOP).
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/, for _bootstrap
import _bootstrap  # noqa: E402,F401  (one-line error if the stack is missing)
import torch  # noqa: E402
from mmengine.analysis import get_model_complexity_info  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from bdl_mm.apis.m_model import build_m, m_input_shape, random_batch  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='FLOPs and parameters of M')
    parser.add_argument('config', help='a BDL config (its M: model.segmentor) or a segmentor config')
    parser.add_argument('--shape', type=int, nargs='+', default=None, metavar='H [W]',
                        help="input size (default: the Resize scale of the config's test pipeline)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument('--json', help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    shape = m_input_shape(cfg) if args.shape is None else (args.shape[0], args.shape[-1])
    model = build_m(cfg, device='cpu')
    with torch.no_grad():
        inputs = model.data_preprocessor(random_batch(shape), False)['inputs']
        info = get_model_complexity_info(model, inputs=inputs, show_table=False, show_arch=False)
    result = dict(config=args.config, model=type(model).__name__, input_shape=[3, *shape], flops=int(info['flops']),
                  params=int(info['params']), flops_str=info['flops_str'], params_str=info['params_str'])
    print('=' * 30)
    print('Compute type: direct: randomly generated input')
    print(f'Input shape: {tuple(result["input_shape"])}')
    print(f'Flops: {result["flops_str"]}')
    print(f'Params: {result["params_str"]}')
    print('=' * 30)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
