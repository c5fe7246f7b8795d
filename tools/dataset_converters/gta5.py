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
from mmengine.utils import scandir

from bdl_mm.datasets.label_conversion import SIZE_POLICIES, report, run_conversion, write_lines_atomic
from bdl_mm.datasets.label_maps import build_lut, cityscapes_id_to_train_id, read_id_label

SUFFIX = '_labelTrainIds.png'


def collect_jobs(root, img_dir='images', ann_dir='labels'):
    """One job per image or id label: (name, image, id label, trainId label)."""
    for sub in (root, osp.join(root, img_dir), osp.join(root, ann_dir)):
        if not osp.isdir(sub):
            raise SystemExit(f'gta5.py: folder {sub} does not exist')
    images = {f[:-4] for f in scandir(osp.join(root, img_dir), '.png', recursive=True)}
    labels = {f[:-4] for f in scandir(osp.join(root, ann_dir), '.png', recursive=True) if not f.endswith(SUFFIX)}
    return [(name, osp.join(root, img_dir, name + '.png'), osp.join(root, ann_dir, name + '.png'),
             osp.join(root, ann_dir, name + SUFFIX)) for name in sorted(images | labels)]


def parse_args():
    parser = argparse.ArgumentParser(description='Convert GTA5 labels to Cityscapes trainIds')
    parser.add_argument('gta5_path', help='GTA5 root with images/ and labels/')
    parser.add_argument('--nproc', default=1, type=int, help='number of processes')
    parser.add_argument('--size-mismatch', default='resize', choices=SIZE_POLICIES,
                        help='what to do with labels whose size differs from their image')
    parser.add_argument('--overwrite', action='store_true', help='convert again even if the output exists')
    parser.add_argument('--shard-id', default=0, type=int)
    parser.add_argument('--num-shards', default=1, type=int)
    return parser.parse_args()


def main():
    args = parse_args()
    jobs = collect_jobs(args.gta5_path)
    lut = build_lut(cityscapes_id_to_train_id())
    ok, mismatches, errors = run_conversion(jobs, lut, read_id_label, args.nproc, args.size_mismatch, args.overwrite,
                                            args.shard_id, args.num_shards)
    report('gta5.py', ok, mismatches, errors, args.size_mismatch,
           osp.join(args.gta5_path, 'size_mismatch.txt') if args.num_shards == 1 else None)
    if args.num_shards == 1:
        write_lines_atomic(osp.join(args.gta5_path, 'train.txt'), ok)


if __name__ == '__main__':
    main()
