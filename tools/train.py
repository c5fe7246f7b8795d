"""Train with a bdl_mm / MMSegmentation config: one M or F stage, or the whole of Algorithm 1.

Same command-line interface as MMSegmentation's ``tools/train.py``; ``--amp`` also switches the
optimiser wrappers of a dict layout (M + D_M, CycleGAN) and of every Algorithm-1 stage. For Algorithm 1,
``--check-data {header,full,none}`` sets the preflight data scan and ``--force-resume`` continues a run whose config
changed; bad data, a changed config, a non-finite loss and a config error of Algorithm 1's loop end the run with one
line (docs/reliability.md). ``--dry-run`` builds Algorithm 1's loop (every stage's config and model), prints its
plan (each stage, what it reads and writes, its planned work), runs the preflight data scan and trains nothing.
Algorithm 1 keeps a concise console (full environment, config and mmengine lines in each stage's log file);
``--verbose`` restores mmengine's full console. ``tools/status.py WORK_DIR`` tells where a run stands.
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

from bdl_mm.apis.m_model import check_m_classes
from bdl_mm.datasets.label_maps import LabelFileError
from bdl_mm.engine.disk_estimate import check_plan_disk
from bdl_mm.engine.fingerprint import RunMixError
from bdl_mm.engine.hooks import NonFiniteLossError
from bdl_mm.engine.preflight import DataCheckError, preflight
from bdl_mm.engine.runner import CONSOLE, ConciseRunner
from bdl_mm.models.decode_heads.deeplabv2_head import check_classifier_checkpoint
from bdl_mm.structures.plan import format_plan
from bdl_mm.utils import apply_global_batch_size, enable_amp, init_cpu_distributed
from bdl_mm.utils.atomic_io import DiskFullError
from bdl_mm.visualization import stage_vis_backends

# bad data (before or during the run), another run in the work dir or a changed config, a non-finite loss
RUN_ERRORS = (DataCheckError, LabelFileError, RunMixError, NonFiniteLossError, DiskFullError)
# Algorithm 1's config errors, raised while its loop is built (train_cfg.K/N, stage names and settings, a stage config
# that does not build, an unknown translation type, F's config file missing): each names the key, in one line
LOOP_CONFIG_ERRORS = (ValueError, FileNotFoundError)


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
        '--check-data',
        choices=['header', 'full', 'none'],
        default=None,
        help='Algorithm 1: scan every data set the run will read before the first stage (default: header = read '
        'every image header, decode a sample of labels; full = decode every image and label; none = no scan)')
    parser.add_argument(
        '--force-resume',
        action='store_true',
        default=False,
        help='Algorithm 1: resume even though the config changed since the run started (implies --resume); '
        'without it such a run is refused with the list of changed keys')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        default=False,
        help='Algorithm 1: build the loop, print the plan (each stage, what it reads and writes, its iterations), '
        'run the preflight data scan (--check-data) and train nothing')
    parser.add_argument(
        '--verbose',
        action='store_true',
        default=False,
        help='Algorithm 1: print every stage\'s environment, config and mmengine log lines on the console '
        '(default: one line per stage start and end and per log interval; the rest goes to the log files)')
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

    if args.dry_run and not is_bidirectional_loop(cfg):
        raise SystemExit('error: --dry-run applies to Algorithm-1 (BidirectionalLoop) configs only')
    cfg.resume = args.resume or args.force_resume
    apply_loop_options(cfg, args)
    if cfg.get('load_from') and not args.resume:  # a classifier that does not fit fails now, before any training
        try:
            check_classifier_checkpoint(cfg.model, cfg.load_from)
        except ValueError as e:
            raise SystemExit(f'error: {e}') from None
    try:  # M predicts the dataset's classes (a BDL config's M or a plain segmentor config): one line naming the key
        check_m_classes(cfg)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None
    init_cpu_distributed(cfg)
    # a config that states its global batch (F: the release's batch 4 over 4 GPUs) gets it split over the processes
    apply_global_batch_size(cfg, int(os.environ.get('WORLD_SIZE', os.environ.get('SLURM_NTASKS', 1)))
                            if args.launcher != 'none' else 1)
    runner = runner_class(cfg).from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    build_loop(runner, cfg)
    if args.dry_run:
        return dry_run(runner, cfg)
    try:
        runner.train()
    except RUN_ERRORS as e:  # bad data, changed config, non-finite loss: one line, no traceback
        raise SystemExit(f'error: {e}') from None


def build_loop(runner, cfg):
    """Build an Algorithm-1 loop (``runner.train()`` would build it first thing) so that a config error ends the run
    with one line, ``error: train_cfg...``, exit status 1 and no traceback; other configs are left to mmengine."""
    if not is_bidirectional_loop(cfg):
        return
    try:
        runner.train_loop  # noqa: B018  (the property builds the loop from train_cfg)
    except LOOP_CONFIG_ERRORS as e:
        raise SystemExit(f'error: {e}') from None


def dry_run(runner, cfg):
    """``--dry-run``: print the plan of the loop (built by :func:`build_loop`) and run its preflight scan
    (``train_cfg.check_data``; on a work dir with completed stages, their outputs too). Nothing is trained or
    written but the logs."""
    loop = runner.train_loop
    logger = runner.logger
    units = {stage.name: loop.configs.planned_units(stage, logger) for stage in loop.plan}
    logger.info(f'[BDL] dry run of {cfg.filename} in {cfg.work_dir}: nothing is trained\n'
                + format_plan(loop.plan, units), extra=CONSOLE)
    try:
        preflight(loop.plan, loop.configs, loop.check_data, state=loop.run_state.read().get('stages'), logger=logger)
    except DataCheckError as e:
        raise SystemExit(f'error: {e}') from None
    check_plan_disk(loop.plan, loop.configs, runner.model, cfg.work_dir, loop.run_state.read().get('stages') or {},
                    logger)
    logger.info('[BDL] dry run done: nothing trained', extra=CONSOLE)


def is_bidirectional_loop(cfg) -> bool:
    return str((cfg.get('train_cfg') or {}).get('type', '')).endswith('BidirectionalLoop')


def apply_loop_options(cfg, args):
    """Pass --check-data / --force-resume to an Algorithm-1 loop (``train_cfg``); other configs are left as they
    are (their train loops take no such arguments)."""
    train_cfg = cfg.get('train_cfg') or {}
    if not str(train_cfg.get('type', '')).endswith('BidirectionalLoop'):
        if args.check_data not in (None, 'none') or args.force_resume:
            print_log('--check-data and --force-resume apply to Algorithm-1 (BidirectionalLoop) configs only: '
                      'ignored', logger='current', level=logging.WARNING)
        return
    if args.check_data is not None:
        cfg.train_cfg.check_data = args.check_data
    if args.force_resume:
        cfg.train_cfg.force_resume = True
    if args.verbose:
        cfg.train_cfg.verbose_console = True
    if cfg.get('visualizer') is not None:  # TensorBoard, W&B: the outer runner writes into the run's one run too
        cfg.visualizer.vis_backends = stage_vis_backends(cfg.visualizer.get('vis_backends'), 'run', cfg.work_dir)


def runner_class(cfg):
    """Algorithm 1 runs with a concise console (:class:`ConciseRunner`) unless ``train_cfg.verbose_console``
    (``--verbose``); other configs with mmengine's ``Runner``."""
    train_cfg = cfg.get('train_cfg') or {}
    if str(train_cfg.get('type', '')).endswith('BidirectionalLoop') and not train_cfg.get('verbose_console'):
        return ConciseRunner
    return Runner


if __name__ == '__main__':
    main()
