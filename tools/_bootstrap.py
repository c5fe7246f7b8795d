"""Shared start-up for the command-line tools: make the repo importable and check the stack in one line.

Warnings raised while the stack imports (e.g. a FutureWarning of diffusers, which MMagic imports) are held back:
the project's own are shown as usual; those of installed packages go to the first run's log file
(:class:`~bdl_mm.engine.runner.ConciseRunner`), not to the console.
"""
import gc
import os.path as osp
import sys
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

with warnings.catch_warnings(record=True) as _caught:
    try:
        import bdl_mm  # noqa: E402,F401  (checks the pinned stack, registers every module)
    except ImportError as e:  # bdl_mm.utils.DependencyError is an ImportError with a one-line message
        raise SystemExit(f'error: {e}') from None

from bdl_mm.engine.runner.concise_runner import defer_import_warnings  # noqa: E402

defer_import_warnings(_caught)

# Everything imported so far (torch, OpenMMLab, the registries) lives as long as the process: keep it out of the
# garbage collector's scans. mmengine's datasets call gc.collect() when they serialise their lists, once per
# dataset build, and each full collection walked this whole heap (about a third of a second each).
gc.freeze()
