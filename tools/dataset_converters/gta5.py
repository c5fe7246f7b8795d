"""Convert GTA5 labels (Cityscapes label ids, palette PNGs) to Cityscapes trainId PNGs.

In the style of MMSeg's ``tools/dataset_converters/cityscapes.py``::

    python tools/dataset_converters/gta5.py data/gta5 --nproc 8

reads ``images/XXXXX.png`` and ``labels/XXXXX.png`` and writes ``labels/XXXXX_labelTrainIds.png`` (uint8,
255 = ignore) with cityscapesscripts' id -> trainId table, and the split file ``train.txt`` (all usable images: the
release trains on all 24,966). Existing outputs are kept unless ``--overwrite``, so an interrupted run resumes;
``--shard-id/--num-shards`` split the work across machines (run once more without sharding to write the split).

Some GTA5 labels do not have the size of their image. They are listed in ``size_mismatch.txt`` and handled by
``--size-mismatch``: ``resize`` (default) resizes the trainId label to the image size (nearest neighbour), which is
what the release amounts to, since it stretches image and label to 1280x720 independently; ``drop`` leaves them out
of ``train.txt``; ``error`` stops with one line naming the file.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/, for _bootstrap
import _bootstrap  # noqa: F401,E402  (one-line error if the stack is missing)

from bdl_mm.datasets.label_conversion import (
    add_conversion_args,
    collect_folder_jobs,
    report,
    run_conversion,
    write_lines_atomic,
)
from bdl_mm.datasets.label_maps import build_lut, cityscapes_id_to_train_id, read_id_label


def collect_jobs(root, img_dir='images', ann_dir='labels'):
    """One job per image or id label: (name, image, id label, trainId label)."""
    return collect_folder_jobs('gta5.py', root, img_dir, ann_dir)


def parse_args():
    parser = argparse.ArgumentParser(description='Convert GTA5 labels to Cityscapes trainIds')
    parser.add_argument('gta5_path', help='GTA5 root with images/ and labels/')
    add_conversion_args(parser, size_mismatch='resize')
    return parser.parse_args()


def main():
    args = parse_args()
    jobs = collect_jobs(args.gta5_path)
    lut = build_lut(cityscapes_id_to_train_id())
    ok, mismatches, errors = run_conversion(jobs, lut, read_id_label, args.nproc, args.size_mismatch, args.overwrite,
                                            args.shard_id, args.num_shards,
                                            progress=args.progress)
    report('gta5.py', ok, mismatches, errors, args.size_mismatch,
           osp.join(args.gta5_path, 'size_mismatch.txt') if args.num_shards == 1 else None)
    if args.num_shards == 1:
        write_lines_atomic(osp.join(args.gta5_path, 'train.txt'), ok)


if __name__ == '__main__':
    main()
