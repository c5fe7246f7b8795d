# Copyright (c) bdl_mm contributors.
"""Branch an Algorithm-1 run: copy its work dir without the stages from a given point on, so that the copy can be
resumed with another setting. This is how a switch is screened on finished runs (docs/experiments/shift_study.md):
the stages the switch cannot change are computed once, and each pair of runs differs only where it acts.

    python tools/branch_run.py SRC_WORK_DIR DST_WORK_DIR --from k1/ssl1 ref/fda/k1/ssl1 ref/reinhard/k1/ssl1
    python tools/train.py CONFIG --work-dir DST_WORK_DIR --resume --force-resume --cfg-options train_cfg.<switch>=...

``--from`` names stages of the source's plan. Each is left out together with every later stage of its track: the
run's own stages (leaving out ``m0`` leaves out everything, since every track starts from M(0)), one reference
track ``ref/<name>/``, or the oracle. The completed stages that remain are copied with their files, and every path
in the copy's ``bdl_state.json`` that pointed into SRC points into DST; stages that had not finished are left out.
The copy has no final model and no results. Its fingerprint (``bdl_config.json``) is the source's, so a resume
with another config needs ``--force-resume``, which records the changed keys in it: the branch's provenance.

The kept stages must be ones the new setting does not change (for example M(0), F(1), S'(1) and M_0(1) for a
switch of the SSL rounds); this tool cannot know which a switch changes. The initial weights (``init_weights.pth``)
are kept. The source is locked while it is copied (``bdl_run.lock``): a running source is refused. Nothing is
trained. The stages left out are not copied at all.

``--link`` hard-links the checkpoints and images (``.pth``, ``.png``, ``.jpg``) instead of copying them, so that a
branch costs almost no disk (27 branches of the toy study: about 12 GB as copies). This is safe because the project
writes such files whole, to a temporary name then renamed (``bdl_mm.utils.atomic_io``), and never changes one in
place: a branch that writes one again replaces its own link, and the source's file stays as it was. Where links are
not possible (another file system) the file is copied. Logs, JSON and configs are always copied.
"""
import argparse
import os
import os.path as osp
import shutil
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from bdl_mm.engine.run_status import STATE_FILE, StatusError, read_state  # noqa: E402
from bdl_mm.engine.work_dir_lock import LOCK_FILE, WorkDirInUseError, WorkDirLock  # noqa: E402
from bdl_mm.utils.atomic_io import atomic_write_json  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Copy an Algorithm-1 run without the stages from a point on')
    parser.add_argument('src', help='work dir of the run to branch')
    parser.add_argument('dst', help='work dir of the branch (must not exist)')
    parser.add_argument('--from', dest='stages', nargs='+', required=True, metavar='STAGE',
                        help='stages left out, each with every later stage of its track')
    parser.add_argument('--link', action='store_true',
                        help='hard-link checkpoints and images (.pth, .png, .jpg) instead of copying them')
    return parser.parse_args(argv)


# written whole (temporary file, then rename) and never changed in place: a hard link cannot be changed through
LINKED_SUFFIXES = ('.pth', '.png', '.jpg', '.jpeg')


def copy_or_link(link: bool):
    """``shutil.copytree``'s copy function: with ``link``, a hard link for the files of :data:`LINKED_SUFFIXES`
    (a copy where the file system refuses one), else a copy."""
    def copy(src: str, dst: str) -> str:
        if link and src.lower().endswith(LINKED_SUFFIXES):
            try:
                os.link(src, dst)
                return dst
            except OSError:
                pass
        return shutil.copy2(src, dst)
    return copy


def track(name: str) -> str:
    """The track of a stage: '' (the run's own stages), 'ref/<name>' (a reference track) or 'ref/oracle'."""
    parts = name.split('/')
    return '/'.join(parts[:2]) if parts[0] == 'ref' else ''


def left_out(plan: list, stages: list) -> set:
    """The stages of ``plan`` left out by ``--from stages``."""
    unknown = [s for s in stages if s not in plan]
    if unknown:
        raise ValueError(f'--from {unknown[0]}: not a stage of the run; its stages: {", ".join(plan)}')
    if plan and plan[0] in stages:  # M(0): every track starts from it
        return set(plan)
    out = set()
    for stage in stages:
        start = plan.index(stage)
        out.update(s for s in plan[start:] if track(s) == track(stage))
    return out


def _moved(value, src: str, dst: str):
    """``value`` with every path string under ``src`` moved under ``dst`` (recursively)."""
    if isinstance(value, dict):
        return {k: _moved(v, src, dst) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, src, dst) for v in value]
    if isinstance(value, str) and (value == src or value.startswith(src + os.sep)):
        return dst + value[len(src):]
    return value


def branch(src: str, dst: str, stages: list, link: bool = False) -> dict:
    """Copy the run in ``src`` to ``dst`` without the stages ``stages`` leave out (``link``: checkpoints and images
    hard-linked); returns the copy's state."""
    src, dst = osp.abspath(src), osp.abspath(dst)
    try:
        read_state(src)  # a BDL work dir, or one line saying why not
    except StatusError as e:
        raise StatusError(f'the source holds no Algorithm-1 run: {e}') from None
    if osp.exists(dst):
        raise FileExistsError(f'{dst} exists: a branch goes into a new work dir')
    lock = WorkDirLock(src).acquire()  # refuses a source that is running
    try:
        state = read_state(src)  # again under the lock: the state the copy is made from
        plan = state['plan']
        dropped = left_out(plan, stages)
        kept = [s for s in plan if s not in dropped and (state['stages'].get(s) or {}).get('status') == 'done']
        tmp = dst + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        # the run's own files, not a stage's (each stage folder has its final_model.pth)
        run_files = {LOCK_FILE, 'final_model.pth', 'results.md', 'results.json', 'results.png'}
        left = {osp.join(src, name) for name in plan if name not in kept}  # nested names: ref/fda/k1/m0 ...
        shutil.copytree(src, tmp, symlinks=True, copy_function=copy_or_link(link),
                        ignore=lambda folder, names: [n for n in names if (folder == src and n in run_files)
                                                      or osp.join(folder, n) in left])
        state['stages'] = {name: _moved(state['stages'][name], src, dst) for name in kept}
        state.update(final_model=None, running=None)
        atomic_write_json(osp.join(tmp, STATE_FILE), state)
        os.replace(tmp, dst)
    finally:
        lock.release()
    return state


def main(argv=None):
    args = parse_args(argv)
    try:
        state = branch(args.src, args.dst, args.stages, link=args.link)
    except (ValueError, StatusError, FileExistsError, WorkDirInUseError) as e:
        raise SystemExit(f'error: {e}')
    print(f'[branch] {args.dst}: kept {len(state["stages"])} completed stage(s) of {args.src}: '
          f'{", ".join(state["stages"]) or "none"}; resume it with tools/train.py CONFIG --work-dir {args.dst} '
          '--resume --force-resume')


if __name__ == '__main__':
    main()
