"""Where an Algorithm-1 run stands: ``python tools/status.py WORK_DIR [--json]``.

Usable at any time, from another shell or another machine that sees the work dir: it reads only files that the
run writes (``bdl_state.json``, the stages' mmengine scalars and logs) and needs only the Python standard
library (``bdl_mm/engine/run_status.py`` is loaded by path, without importing torch or OpenMMLab). It reports the
plan with each stage's state (done, running, interrupted, pending), each done stage's duration and mIoU, the
running stage's progress and the time since its last log line, the ETA of the whole run, the pseudo-label kept
ratios and where the final model will be. ``--json`` prints the same, machine-readable.
"""
import argparse
import importlib
import json
import os.path as osp
import sys
import types

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _run_status_module():
    """``bdl_mm.engine.run_status`` without running the package's ``__init__`` (which imports torch and
    OpenMMLab): the packages on its import path are registered as bare folders first."""
    if 'bdl_mm' not in sys.modules:
        for name in ('bdl_mm', 'bdl_mm.structures', 'bdl_mm.engine'):
            package = types.ModuleType(name)
            package.__path__ = [osp.join(ROOT, *name.split('.'))]
            sys.modules[name] = package
    return importlib.import_module('bdl_mm.engine.run_status')


def main(argv=None):
    parser = argparse.ArgumentParser(description='Report where a BDL (Algorithm 1) run stands')
    parser.add_argument('work_dir', help='the work dir of the run (tools/train.py --work-dir)')
    parser.add_argument('--json', action='store_true', help='print the status as JSON')
    args = parser.parse_args(argv)
    rs = _run_status_module()
    try:
        status = rs.run_status(args.work_dir)
    except rs.StatusError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    try:
        print(json.dumps(status, indent=2) if args.json else rs.format_status(status), flush=True)
    except BrokenPipeError:  # `tools/status.py WORK_DIR | head`
        sys.stdout = None
    return 0


if __name__ == '__main__':
    sys.exit(main())
