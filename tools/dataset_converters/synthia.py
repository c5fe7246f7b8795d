"""Convert SYNTHIA-RAND-CITYSCAPES labels (16-bit PNGs, class id in the first channel) to Cityscapes trainIds.

::

    python tools/dataset_converters/synthia.py data/synthia --nproc 8

reads ``RGB/XXXXXXX.png`` and ``GT/LABELS/XXXXXXX.png`` and writes ``GT/LABELS/XXXXXXX_labelTrainIds.png`` (uint8,
255 = ignore) with the release's SYNTHIA id -> trainId table (``bdl_mm.datasets.label_maps``), and the split file
``train.txt`` (all 9,400 images). Resuming, sharding and ``--size-mismatch`` work as in ``gta5.py``.
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
from bdl_mm.datasets.label_maps import SYNTHIA_ID_TO_TRAIN_ID, build_lut, read_synthia_label


def collect_jobs(root, img_dir='RGB', ann_dir=osp.join('GT', 'LABELS')):
    """One job per image or id label: (name, image, id label, trainId label)."""
    return collect_folder_jobs('synthia.py', root, img_dir, ann_dir)


def parse_args():
    parser = argparse.ArgumentParser(description='Convert SYNTHIA-RAND-CITYSCAPES labels to Cityscapes trainIds')
    parser.add_argument('synthia_path', help='SYNTHIA root with RGB/ and GT/LABELS/')
    add_conversion_args(parser, size_mismatch='error')
    return parser.parse_args()


def main():
    args = parse_args()
    jobs = collect_jobs(args.synthia_path)
    lut = build_lut(SYNTHIA_ID_TO_TRAIN_ID, size=65536)
    ok, mismatches, errors = run_conversion(jobs, lut, read_synthia_label, args.nproc, args.size_mismatch,
                                            args.overwrite, args.shard_id, args.num_shards,
                                            progress=args.progress)
    report('synthia.py', ok, mismatches, errors, args.size_mismatch,
           osp.join(args.synthia_path, 'size_mismatch.txt') if args.num_shards == 1 else None)
    if args.num_shards == 1:
        write_lines_atomic(osp.join(args.synthia_path, 'train.txt'), ok)


if __name__ == '__main__':
    main()
