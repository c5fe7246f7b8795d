# Copyright (c) bdl_mm contributors.
"""Translate a whole source set with the generator of a trained F (S' = F(S), BDL Algorithm 1), or with a fitted
translation baseline (FDA, Reinhard: the ``translator.json`` a translation stage wrote in F's place).

    python tools/translate.py CONFIG CHECKPOINT --src ROOT --out DIR [--img-suffix .png] [--target-domain target]
        [--batch-size 1] [--num-workers 2] [--device cuda] [--scale-width 1024] [--on-error raise|skip] [--overwrite]
        [--shard-id K --num-shards N] [--launcher pytorch] [--no-progress] [--cfg-options key=value ...]

Writes ``DIR/<path relative to ROOT>`` with the same name and extension as each source image, so the source labels
still match; by default at F's training scale (the config's ScaleWidth, e.g. width 1024: the release), which M's
pipeline then resizes like any source image (policy: ``bdl_mm/apis/translate.py``). Rerunning skips finished files;
writes are atomic; ``--shard-id/--num-shards`` (or ``--launcher pytorch``: rank/world size) split the set between
processes.
Example: ``python tools/translate.py configs/translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py
work_dirs/f1/epoch_20.pth --src data/gta5/images --out data/gta5_f1/images``. A baseline takes no checkpoint and
translates at the source's resolution, as the translate stage does:
``python tools/translate.py work_dirs/bdl_gta5_fda/k1/translation/translator.json --src data/gta5/images --out DIR``.
An F trained with ``train_cfg.stages.translation.prealign`` (ledger row 20) learned on the baseline's copy of S:
translate S with that stage's ``prealign.json`` (a baseline record, like ``translator.json``) first, then the
result with F, as the translate stage does.
"""
import argparse
import os
import sys

try:
    import _bootstrap  # noqa: F401  (repo on sys.path, one-line stack check)
except ImportError:  # imported as tools.translate
    from tools import _bootstrap  # noqa: F401

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import get_dist_info, init_dist  # noqa: E402

from bdl_mm.apis.translate import load_translator, training_width, translate_dataset  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Translate a source image set with the generator of F')
    parser.add_argument('config', help='translation config (e.g. configs/translation/*.py), or the translator.json '
                        'of a fitted baseline (FDA, Reinhard) written by the translation stage')
    parser.add_argument('checkpoint', nargs='?', default=None, help='F checkpoint (none for a translator.json)')
    parser.add_argument('--src', required=True, help='source image folder (scanned recursively)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--img-suffix', default='.png', help='suffix of the images to translate')
    parser.add_argument('--target-domain', default=None, help='output domain (default: the model default)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward (equal sizes only)')
    parser.add_argument('--num-workers', type=int, default=2, help='image reading processes')
    parser.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    parser.add_argument('--scale-width', type=int, default=None,
                        help='resize to this width (PIL bicubic, pytorch-CycleGAN scale_width) and keep that size; '
                        "default: the width of the config's ScaleWidth (F's training scale, the release); "
                        '0: translate at the original resolution')
    parser.add_argument('--scale', type=int, default=None,
                        help='translate at this long-edge size and resize back to the original size '
                        '(needs --scale-width 0)')
    parser.add_argument('--on-error', choices=['raise', 'skip'], default='raise',
                        help='unreadable image: stop (default) or skip it, logged and listed in '
                        'OUT/skipped_images*.txt')
    parser.add_argument('--overwrite', action='store_true', help='rewrite existing outputs')
    parser.add_argument('--shard-id', type=int, default=None)
    parser.add_argument('--num-shards', type=int, default=None)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if (args.shard_id is None) != (args.num_shards is None):
        parser.error('--shard-id and --num-shards go together')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.config.endswith('.json'):
        return translate_with_baseline(args)
    if args.checkpoint is None:
        raise SystemExit('error: the F checkpoint is missing (only a baseline\'s translator.json needs none)')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    shard_id, num_shards = args.shard_id, args.num_shards
    if args.launcher != 'none':
        init_dist(args.launcher, **cfg.get('env_cfg', {}).get('dist_cfg', {}))
        if num_shards is None:
            shard_id, num_shards = get_dist_info()
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint {args.checkpoint} does not exist')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and args.launcher != 'none':
        device = f'cuda:{torch.cuda.current_device()}'
    width = training_width(cfg) if args.scale_width is None else (args.scale_width or None)
    if args.scale is not None and width is not None:
        raise SystemExit('error: --scale resizes back to the original size; pass --scale-width 0 with it')
    model = load_translator(cfg, args.checkpoint, device=device)
    stats = translate_dataset(
        model, args.src, args.out, img_suffix=args.img_suffix, target_domain=args.target_domain,
        batch_size=args.batch_size, num_workers=args.num_workers, shard_id=shard_id, num_shards=num_shards,
        on_error=args.on_error, overwrite=args.overwrite, scale=args.scale, scale_width=width,
        progress=not args.no_progress)
    report(args, stats)
    return 0


def translate_with_baseline(args) -> int:
    """A fitted baseline (``translator.json``), image by image at the source's resolution (``--scale-width`` to
    resize first); ``--target-domain``, ``--scale``, ``--batch-size`` and ``--cfg-options`` do not apply."""
    import json

    from bdl_mm.models.translators.translation_baseline import baseline_from_record
    if args.checkpoint is not None:
        raise SystemExit(f'error: {args.config} is a fitted baseline: it takes no checkpoint')
    if args.target_domain is not None or args.scale is not None or args.cfg_options:
        raise SystemExit('error: --target-domain, --scale and --cfg-options apply to F, not to a baseline')
    if not os.path.isfile(args.config):
        raise SystemExit(f'error: {args.config} does not exist')
    with open(args.config) as f:
        model = baseline_from_record(json.load(f))
    shard_id, num_shards = args.shard_id, args.num_shards
    if args.launcher != 'none':
        init_dist(args.launcher)
        if num_shards is None:
            shard_id, num_shards = get_dist_info()
    stats = translate_dataset(
        model, args.src, args.out, img_suffix=args.img_suffix, num_workers=args.num_workers, shard_id=shard_id,
        num_shards=num_shards, on_error=args.on_error, overwrite=args.overwrite, scale_width=args.scale_width or None,
        progress=not args.no_progress)
    report(args, stats)
    return 0


def report(args, stats: dict) -> None:
    print(f'{args.out}: {stats["written"]} written, {stats["existing"]} already there, {stats["skipped"]} skipped '
          f'(shard of {stats["total"]} images)')


if __name__ == '__main__':
    sys.exit(main())
