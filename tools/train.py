"""Train with a bdl_mm / MMSegmentation config: one M or F stage, or the whole of Algorithm 1.

Same command-line interface as MMSegmentation's ``tools/train.py``; ``--amp`` also switches the
optimiser wrappers of a dict layout (M + D_M, CycleGAN) and of every Algorithm-1 stage.
"""
import argparse
import logging
import os
import os.path as osp

import _bootstrap  # noqa: F401  (must come first: one-line error if the stack is missing)
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from bdl_mm.utils import enable_amp, init_cpu_distributed


def parse_args():
    parser = argparse.ArgumentParser(description='Train a segmentor, a translator or the whole BDL procedure')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir automatically (Algorithm 1: skip completed '
        'stages and resume the interrupted stage from its last checkpoint)')
    parser.add_argument('--amp', action='store_true', default=False, help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair in xxx=yyy format will be merged '
        'into config file. If the value to be overwritten is a list, it should be like key="[a,b]" or key=a,b. '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]". Note that the quotation marks are '
        'necessary and that no white space is allowed.')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK itself.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp and enable_amp(cfg) == 0:
        print_log('AMP training is already enabled in your config.', logger='current', level=logging.WARNING)

    cfg.resume = args.resume
    init_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
