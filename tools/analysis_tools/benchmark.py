# Copyright (c) bdl_mm contributors.
"""Inference speed of M (the segmentation model) of a config, on random input of the size it runs at.

    python tools/analysis_tools/benchmark.py CONFIG [CHECKPOINT] [--shape H [W]] [--repeat 50] [--warmup 5]
        [--batch-size 1] [--device cuda|cpu] [--cfg-options key=value ...] [--json OUT.json]

M is ``model.segmentor`` of a BDL config (or ``model`` of a plain segmentor config), with the weights of
CHECKPOINT (``final_model.pth`` of a BDL run, or an M stage's ``segmentor.pth``; default: the initial weights, which
take as long). One timed step is ``model.test_step``: data preprocessing, the forward pass and the prediction at the
input's size (as in evaluation), after ``--warmup`` untimed steps. The input size defaults to the test pipeline's
``Resize`` scale (e.g. 512x1024 for Cityscapes in the release). Prints the mean and median time per image and the
images per second.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/, for _bootstrap
import _bootstrap  # noqa: E402,F401  (one-line error if the stack is missing)
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from bdl_mm.apis.m_model import build_m, m_input_shape, random_batch  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Inference speed of M on random input')
    parser.add_argument('config', help='a BDL config (its M: model.segmentor) or a segmentor config')
    parser.add_argument('checkpoint', nargs='?', default=None, help='weights (default: the initial weights)')
    parser.add_argument('--shape', type=int, nargs='+', default=None, metavar='H [W]',
                        help="input size (default: the Resize scale of the config's test pipeline)")
    parser.add_argument('--repeat', type=int, default=50, help='timed steps')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument('--json', help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    if args.repeat < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error('--repeat and --batch-size must be >= 1, --warmup >= 0')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    shape = m_input_shape(cfg) if args.shape is None else (args.shape[0], args.shape[-1])
    device = torch.device(args.device)
    model = build_m(cfg, args.checkpoint, device=device)
    data = random_batch(shape, args.batch_size)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    times = []
    with torch.no_grad():
        for step in range(args.warmup + args.repeat):
            sync()
            start = time.perf_counter()
            model.test_step(data)
            sync()
            if step >= args.warmup:
                times.append((time.perf_counter() - start) / args.batch_size)
    result = dict(config=args.config, checkpoint=args.checkpoint, model=type(model).__name__, device=str(device),
                  input_shape=[3, *shape], batch_size=args.batch_size, repeat=args.repeat,
                  mean_ms_per_image=1000 * statistics.fmean(times), median_ms_per_image=1000 * statistics.median(times),
                  images_per_s=1 / statistics.fmean(times))
    print(f'M ({result["model"]}), input {"x".join(map(str, result["input_shape"]))}, batch {args.batch_size}, '
          f'{device}: {result["mean_ms_per_image"]:.2f} ms/image (median {result["median_ms_per_image"]:.2f}) over '
          f'{args.repeat} steps, {result["images_per_s"]:.2f} images/s')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
