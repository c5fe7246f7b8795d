"""Convert Cityscapes ``*_gtFine_labelIds.png`` to ``*_gtFine_labelTrainIds.png`` and write split files.

::

    python tools/dataset_converters/cityscapes.py data/cityscapes --nproc 8

Unlike MMSeg's converter (which rasterises ``*_polygons.json`` again), this maps the released label id PNGs with
cityscapesscripts' id -> trainId table; the result is the same pixel for pixel. Writes ``train.txt``, ``val.txt``
(and ``test.txt`` when present) with ``<city>/<city>_xxxxxx_yyyyyy`` entries, as MMSeg's converter does. Checks
that each label has its ``leftImg8bit`` image with the same size (``--size-mismatch``, default ``error``).
Resuming and sharding work as in ``gta5.py``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/, for _bootstrap
import _bootstrap  # noqa: F401,E402  (one-line error if the stack is missing)
from mmengine.utils import scandir

from bdl_mm.datasets.label_conversion import add_conversion_args, report, run_conversion, write_lines_atomic
from bdl_mm.datasets.label_maps import build_lut, cityscapes_id_to_train_id, read_id_label

ID_SUFFIX = '_gtFine_labelIds.png'
TRAIN_ID_SUFFIX = '_gtFine_labelTrainIds.png'
IMG_SUFFIX = '_leftImg8bit.png'


def collect_jobs(root, split, gt_dir='gtFine', img_dir='leftImg8bit'):
    """One job per label id PNG of ``split``: (name, image, id label, trainId label)."""
    gt_split = osp.join(root, gt_dir, split)
    return [(f[:-len(ID_SUFFIX)], osp.join(root, img_dir, split, f[:-len(ID_SUFFIX)] + IMG_SUFFIX),
             osp.join(gt_split, f), osp.join(gt_split, f[:-len(ID_SUFFIX)] + TRAIN_ID_SUFFIX))
            for f in sorted(scandir(gt_split, ID_SUFFIX, recursive=True))]


def parse_args():
    parser = argparse.ArgumentParser(description='Convert Cityscapes labelIds to labelTrainIds')
    parser.add_argument('cityscapes_path', help='cityscapes root with leftImg8bit/ and gtFine/')
    parser.add_argument('--gt-dir', default='gtFine', type=str)
    add_conversion_args(parser, size_mismatch='error')
    return parser.parse_args()


def main():
    args = parse_args()
    root = args.cityscapes_path
    gt_root = osp.join(root, args.gt_dir)
    if not osp.isdir(gt_root):
        raise SystemExit(f'cityscapes.py: folder {gt_root} does not exist')
    lut = build_lut(cityscapes_id_to_train_id())
    splits = [s for s in ('train', 'val', 'test') if osp.isdir(osp.join(gt_root, s))]
    for split in splits:
        jobs = collect_jobs(root, split, args.gt_dir)
        ok, mismatches, errors = run_conversion(jobs, lut, read_id_label, args.nproc, args.size_mismatch,
                                                args.overwrite, args.shard_id, args.num_shards,
                                                progress=args.progress)
        report(f'cityscapes.py [{split}]', ok, mismatches, errors, args.size_mismatch)
        if args.num_shards == 1:
            write_lines_atomic(osp.join(root, f'{split}.txt'), ok)


if __name__ == '__main__':
    main()
