"""The conversion step shared by ``tools/dataset_converters/{gta5,synthia,cityscapes}.py``.

One job converts one id label into a ``*_labelTrainIds.png`` next to it (atomic write, skipped when it exists and
``overwrite`` is off, so an interrupted run resumes) and checks that the image exists, is readable and has the
label's size. Jobs are run in parallel with mmengine's progress bar and may be sharded across machines.
"""
import os.path as osp
from functools import partial
from multiprocessing import Pool

import cv2
from mmengine.utils import track_parallel_progress, track_progress

from ..utils.atomic_io import atomic_write_bytes, atomic_write_text
from .label_maps import LabelFileError, image_size

SIZE_POLICIES = ('resize', 'drop', 'error')
TRAIN_ID_SUFFIX = '_labelTrainIds.png'


def add_conversion_args(parser, size_mismatch='error'):
    """The options every converter in tools/dataset_converters/ shares."""
    parser.add_argument('--nproc', default=1, type=int, help='number of processes')
    parser.add_argument('--size-mismatch', default=size_mismatch, choices=SIZE_POLICIES,
                        help='what to do with labels whose size differs from their image')
    parser.add_argument('--overwrite', action='store_true', help='convert again even if the output exists')
    parser.add_argument('--shard-id', default=0, type=int)
    parser.add_argument('--num-shards', default=1, type=int)
    parser.add_argument('--no-progress', dest='progress', action='store_false', help='no progress bar')
    return parser


def collect_folder_jobs(tool, root, img_dir, ann_dir, suffix=TRAIN_ID_SUFFIX):
    """Jobs of a data set whose images and id labels share names in two folders (GTA5, SYNTHIA):
    one per image or id label, ``(name, image, id label, trainId label)``; a missing folder stops ``tool``."""
    from mmengine.utils import scandir
    for sub in (root, osp.join(root, img_dir), osp.join(root, ann_dir)):
        if not osp.isdir(sub):
            raise SystemExit(f'{tool}: folder {sub} does not exist')
    images = {f[:-4] for f in scandir(osp.join(root, img_dir), '.png', recursive=True)}
    labels = {f[:-4] for f in scandir(osp.join(root, ann_dir), '.png', recursive=True) if not f.endswith(suffix)}
    return [(name, osp.join(root, img_dir, name + '.png'), osp.join(root, ann_dir, name + '.png'),
             osp.join(root, ann_dir, name + suffix)) for name in sorted(images | labels)]


def write_png_atomic(path, array):
    """Write a PNG through a temporary file in the same folder, then rename it into place."""
    ok, buf = cv2.imencode('.png', array)
    if not ok:
        raise LabelFileError(f'cannot write {path}')
    atomic_write_bytes(path, buf.tobytes())


def convert_one(job, lut, reader, size_policy='error', overwrite=False):
    """Convert one label; ``job`` = (name, image path, id label path, trainId label path).

    Returns ``(name, status, message)`` with status ``'ok'``, ``'mismatch'`` (label size differs from the image
    size; with policy ``'resize'`` the trainId label is resized to the image, nearest neighbour), or ``'error'``
    (one-line message naming the file).
    """
    name, img_path, src, dst = job
    try:
        if not osp.isfile(img_path):
            raise LabelFileError(f'image {img_path} does not exist')
        if not osp.isfile(src):
            raise LabelFileError(f'label {src} for image {img_path} does not exist')
        img_w, img_h = image_size(img_path)
        done = not overwrite and osp.isfile(dst)
        if done:
            lab_w, lab_h = image_size(src)
            mismatch = (lab_w, lab_h) != (img_w, img_h)
        else:
            ids = reader(src)
            lab_h, lab_w = ids.shape[:2]
            train_ids = lut[ids]
            mismatch = (lab_w, lab_h) != (img_w, img_h)
            if mismatch and size_policy == 'resize':
                train_ids = cv2.resize(train_ids, (img_w, img_h), interpolation=cv2.INTER_NEAREST)
        msg = f'label {src} is {lab_w}x{lab_h} but image {img_path} is {img_w}x{img_h}' if mismatch else ''
        if mismatch and size_policy == 'error':
            return name, 'error', msg
        if not done and not (mismatch and size_policy == 'drop'):
            write_png_atomic(dst, train_ids)
        return name, 'mismatch' if mismatch else 'ok', msg
    except LabelFileError as e:
        return name, 'error', str(e)


def run_conversion(jobs, lut, reader, nproc=1, size_policy='error', overwrite=False, shard_id=0, num_shards=1,
                   progress=True):
    """Convert ``jobs`` (this shard's part) and return ``(ok_names, mismatches, errors)``.

    ``mismatches`` and ``errors`` are lists of ``(name, message)``; names of ``ok_names`` are those that belong in
    the split file (mismatching pairs included unless the policy is ``'drop'``).
    """
    if size_policy not in SIZE_POLICIES:
        raise ValueError(f'size policy must be one of {SIZE_POLICIES}, got {size_policy!r}')
    jobs = sorted(jobs)[shard_id::num_shards]
    func = partial(convert_one, lut=lut, reader=reader, size_policy=size_policy, overwrite=overwrite)
    if not jobs:
        return [], [], []
    if not progress:
        if nproc > 1:
            with Pool(nproc) as pool:
                results = pool.map(func, jobs)
        else:
            results = [func(job) for job in jobs]
    elif nproc > 1:
        results = track_parallel_progress(func, jobs, nproc)
    else:
        results = track_progress(func, jobs)
    ok, mismatches, errors = [], [], []
    for name, status, msg in results:
        if status == 'error':
            errors.append((name, msg))
            continue
        if status == 'mismatch':
            mismatches.append((name, msg))
            if size_policy == 'drop':
                continue
        ok.append(name)
    return ok, mismatches, errors


def write_lines_atomic(path, lines):
    atomic_write_text(path, ''.join(f'{line}\n' for line in lines))


def report(tool, ok, mismatches, errors, size_policy, mismatch_file=None):
    """Print the outcome; write the mismatch list; exit with one line per bad file if any failed."""
    for _, msg in mismatches:
        print(f'{tool}: size mismatch ({size_policy}): {msg}')
    if mismatch_file is not None and mismatches:
        write_lines_atomic(mismatch_file, [name for name, _ in mismatches])
    for _, msg in errors:
        print(f'{tool}: error: {msg}')
    print(f'{tool}: {len(ok)} labels converted, {len(mismatches)} size mismatches ({size_policy}), '
          f'{len(errors)} errors')
    if errors:
        raise SystemExit(f'{tool}: {errors[0][1]}' + (f' (and {len(errors) - 1} more)' if len(errors) > 1 else ''))

