# Copyright (c) bdl_mm contributors.
"""Pseudo-label the target train set with a trained M (BDL SSL, paper Sec. 3.2).

    python tools/pseudo_label.py CONFIG CHECKPOINT --out DIR [--mode class_median|global|soft] [--threshold 0.9]
        [--batch-size 1] [--num-workers 2] [--overwrite] [--keep-cache] [--shard-id K --num-shards N]
        [--launcher pytorch] [--cfg-options key=value ...]

CONFIG: an MMSeg / bdl_mm config. The target set is ``pseudo_label_dataset`` if the config has it, else the
``target`` of the train ``UDADataset``, else the train set. The model is ``cfg.model``, or its ``segmentor`` if it
is a ``BDLSegmentor``; CHECKPOINT may hold either's keys (``segmentor.`` prefixes are stripped).
Output layout: see ``bdl_mm/apis/pseudo_label.py``. Independent shards (``--shard-id/--num-shards``) may run at
the same time, in any processes; each waits for the others' histograms (or ``--no-wait``: rerun to finish).
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import init_dist
from mmengine.registry import init_default_scope


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='BDL SSL: write target pseudo labels with a trained model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint of M (MMSeg segmentor or BDLSegmentor)')
    parser.add_argument('--out', required=True, help='pseudo-label folder')
    parser.add_argument('--mode', choices=['class_median', 'global', 'soft'], default=None,
                        help='threshold mode (default: config pseudo_label.mode, else class_median = release)')
    parser.add_argument('--threshold', type=float, default=None,
                        help='global threshold / cap of the class thresholds (default: config, else 0.9)')
    parser.add_argument('--median', choices=['release', 'numpy'], default=None,
                        help="class_median's statistic: release (sorted[round(n/2)], default) or numpy's median")
    parser.add_argument('--floor', type=float, default=None,
                        help='class_median: the least class threshold (not in the release; default: config, else off)')
    parser.add_argument('--portion', type=float, default=None,
                        help='class_median: keep the top PORTION of each class (class-balanced, CBST; not in the '
                        'release; 0.5 = its median; default: config, else off)')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--overwrite', action='store_true', help='replace labels of a run with other settings')
    parser.add_argument('--keep-cache', action='store_true', help='keep the per-image prediction cache')
    parser.add_argument('--shard-id', type=int, default=None)
    parser.add_argument('--num-shards', type=int, default=None)
    parser.add_argument('--no-wait', action='store_true',
                        help='with shards: do not wait for the other shards; rerun to finish')
    parser.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if (args.shard_id is None) != (args.num_shards is None):
        parser.error('--shard-id and --num-shards go together')
    return args


def segmentor_cfg(cfg):
    """The MMSeg segmentor config of ``cfg.model`` (the inner ``segmentor`` of a BDLSegmentor)."""
    model = cfg.model
    if 'segmentor' in model:
        inner = model['segmentor'].copy()
        if 'data_preprocessor' not in inner and model.get('data_preprocessor') is not None:
            inner['data_preprocessor'] = model['data_preprocessor']
        model = inner
    if 'data_preprocessor' not in model and cfg.get('data_preprocessor') is not None:
        model = model.copy()
        model['data_preprocessor'] = cfg['data_preprocessor']
    return model


def load_segmentor_weights(model: torch.nn.Module, checkpoint: str) -> None:
    """Load an MMSeg or BDLSegmentor checkpoint into the segmentor; any shape difference is an error raised
    before anything is written (e.g. a checkpoint trained for another number of classes)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if any(k.startswith('segmentor.') for k in state):
        state = {k[len('segmentor.'):]: v for k, v in state.items() if k.startswith('segmentor.')}
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise KeyError(f'checkpoint {checkpoint} has no {key}: it does not belong to this config\'s model')
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f'checkpoint {checkpoint}: {key} is {tuple(state[key].shape)} there but '
                             f'{tuple(value.shape)} in the model for the dataset\'s {model.decode_head.num_classes} '
                             'classes (different class count?); nothing was written')
    model.load_state_dict({k: state[k] for k in own}, strict=True)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    if args.launcher != 'none':
        init_dist(args.launcher, **cfg.get('env_cfg', {}).get('dist_cfg', {}))

    from mmseg.registry import MODELS

    import bdl_mm  # noqa: F401  (registers the bdl_mm modules even without custom_imports)
    from bdl_mm.apis.pseudo_label import build_target_dataset, generate_pseudo_labels, target_dataset_cfg

    pl_cfg = cfg.get('pseudo_label', {}) or {}
    mode = args.mode or pl_cfg.get('mode', 'class_median')
    threshold = args.threshold if args.threshold is not None else pl_cfg.get('threshold', 0.9)
    median = args.median or pl_cfg.get('median', 'release')
    floor = args.floor if args.floor is not None else pl_cfg.get('floor')
    portion = args.portion if args.portion is not None else pl_cfg.get('portion')

    dataset = build_target_dataset(target_dataset_cfg(cfg))
    model = MODELS.build(segmentor_cfg(cfg))
    classes = len(dataset.metainfo.get('classes', ()))
    if classes and model.decode_head.num_classes != classes:
        raise ValueError(f'{args.config}: the model has {model.decode_head.num_classes} classes but the target set '
                         f'{type(dataset).__name__} has {classes}; nothing was written')
    load_segmentor_weights(model, args.checkpoint)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model.to(device)

    summary = generate_pseudo_labels(
        model, dict(batch_size=args.batch_size, num_workers=args.num_workers, dataset=dataset), args.out, mode=mode,
        threshold=threshold, median=median, floor=floor, portion=portion, shard_id=args.shard_id,
        num_shards=args.num_shards, overwrite=args.overwrite,
        keep_cache=args.keep_cache, wait_for_shards=not args.no_wait, checkpoint=osp.abspath(args.checkpoint),
        config=osp.abspath(args.config))
    if summary['complete']:
        print(f'{args.out}: {summary["num_images"]} images, kept {100 * summary["kept_ratio"]:.2f}% of the pixels '
              f'({mode}, threshold {threshold})')
    else:
        print(f'{args.out}: this shard is done; waiting for the other shards (rerun to finish)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
