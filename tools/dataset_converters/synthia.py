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
from mmengine.utils import scandir

from bdl_mm.datasets.label_conversion import SIZE_POLICIES, report, run_conversion, write_lines_atomic
from bdl_mm.datasets.label_maps import SYNTHIA_ID_TO_TRAIN_ID, build_lut, read_synthia_label

SUFFIX = '_labelTrainIds.png'


def collect_jobs(root, img_dir='RGB', ann_dir=osp.join('GT', 'LABELS')):
    """One job per image or id label: (name, image, id label, trainId label)."""
    for sub in (root, osp.join(root, img_dir), osp.join(root, ann_dir)):
        if not osp.isdir(sub):
            raise SystemExit(f'synthia.py: folder {sub} does not exist')
    images = {f[:-4] for f in scandir(osp.join(root, img_dir), '.png', recursive=True)}
    labels = {f[:-4] for f in scandir(osp.join(root, ann_dir), '.png', recursive=True) if not f.endswith(SUFFIX)}
    return [(name, osp.join(root, img_dir, name + '.png'), osp.join(root, ann_dir, name + '.png'),
             osp.join(root, ann_dir, name + SUFFIX)) for name in sorted(images | labels)]


def parse_args():
    parser = argparse.ArgumentParser(description='Convert SYNTHIA-RAND-CITYSCAPES labels to Cityscapes trainIds')
    parser.add_argument('synthia_path', help='SYNTHIA root with RGB/ and GT/LABELS/')
    parser.add_argument('--nproc', default=1, type=int, help='number of processes')
    parser.add_argument('--size-mismatch', default='error', choices=SIZE_POLICIES,
                        help='what to do with labels whose size differs from their image')
    parser.add_argument('--overwrite', action='store_true', help='convert again even if the output exists')
    parser.add_argument('--shard-id', default=0, type=int)
    parser.add_argument('--num-shards', default=1, type=int)
    return parser.parse_args()


def main():
    args = parse_args()
    jobs = collect_jobs(args.synthia_path)
    lut = build_lut(SYNTHIA_ID_TO_TRAIN_ID, size=65536)
    ok, mismatches, errors = run_conversion(jobs, lut, read_synthia_label, args.nproc, args.size_mismatch,
                                            args.overwrite, args.shard_id, args.num_shards)
    report('synthia.py', ok, mismatches, errors, args.size_mismatch,
           osp.join(args.synthia_path, 'size_mismatch.txt') if args.num_shards == 1 else None)
    if args.num_shards == 1:
        write_lines_atomic(osp.join(args.synthia_path, 'train.txt'), ok)


if __name__ == '__main__':
    main()
