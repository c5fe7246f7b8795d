"""Shared start-up for the command-line tools: make the repo importable and check the stack in one line."""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:
    import bdl_mm  # noqa: E402,F401  (checks the pinned stack, registers every module)
except ImportError as e:  # bdl_mm.utils.DependencyError is an ImportError with a one-line message
    raise SystemExit(f'error: {e}') from None
