"""Environment helpers shared by the package and its command-line tools.

- ``check_dependencies`` reports a missing or wrong dependency in one line with the command that fixes it.
- ``allow_mmengine_checkpoints`` lets torch >= 2.6's ``weights_only`` loader read mmengine's own checkpoints.
- ``enable_amp`` turns every ``OptimWrapper`` of a config (single, dict of wrappers, stage sub-configs)
  into an ``AmpOptimWrapper`` for ``tools/train.py --amp``.
"""
import importlib

INSTALL_HINT = 'run `bash tools/install.sh` and `source .venv/bin/activate`'

# module -> (required version or None, distribution name)
REQUIRED = {
    'torch': (None, 'torch'),
    'mmengine': ('0.10.7', 'mmengine'),
    'mmcv': ('2.1.0', 'mmcv'),
    'mmseg': ('1.2.2', 'mmsegmentation'),
    'mmagic': ('1.2.0', 'mmagic'),
    # MMagic's data transforms (F's training pipeline) import it unconditionally
    'albumentations': ('1.3.1', 'albumentations'),
}


class DependencyError(ImportError):
    """Raised with a single-line message naming the dependency and the fix."""


def check_dependencies():
    """Raise :class:`DependencyError` (one line) unless the pinned OpenMMLab stack imports."""
    for module, (version, dist) in REQUIRED.items():
        try:
            mod = importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - any failure to import is reported the same way
            pin = f'=={version}' if version else ''
            raise DependencyError(f'bdl_mm needs {dist}{pin} but `import {module}` failed '
                                  f'({type(e).__name__}: {e}); {INSTALL_HINT}') from None
        found = getattr(mod, '__version__', '?')
        if version is not None and found != version:
            raise DependencyError(f'bdl_mm needs {dist}=={version} but {found} is installed; {INSTALL_HINT}')
    try:
        importlib.import_module('mmcv.ops')
    except Exception as e:  # noqa: BLE001
        raise DependencyError(f'bdl_mm needs mmcv {REQUIRED["mmcv"][0]} built with its C++ ops '
                              f'(`import mmcv.ops` failed: {type(e).__name__}: {e}); {INSTALL_HINT}') from None


def require_stack():
    """For command-line tools: exit with the one-line message instead of a traceback."""
    try:
        check_dependencies()
    except DependencyError as e:
        raise SystemExit(f'error: {e}') from None


def allow_mmengine_checkpoints():
    """Allow-list the exact globals mmengine 0.10.7 pickles into its checkpoints.

    torch >= 2.6 loads with ``weights_only=True``; mmengine's message hub stores numpy scalars/arrays and
    its ``HistoryBuffer``, so ``--resume`` fails with ``UnpicklingError: Weights only load failed``.
    Allow-listing these types keeps the safe loader on (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would load
    arbitrary pickles). ``getattr`` is needed because ``HistoryBuffer`` pickles its statistics methods as
    ``getattr(HistoryBuffer, 'mean')``; the safe unpickler still refuses to *call* anything that is not
    allow-listed, so it only yields attributes of the allow-listed classes.
    """
    import numpy as np
    import torch
    from mmengine.logging.history_buffer import HistoryBuffer

    if not hasattr(torch.serialization, 'add_safe_globals'):
        return
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                                          np.int8, np.uint8, np.bool_)]
    torch.serialization.add_safe_globals([
        HistoryBuffer, getattr, np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar,
        *dtypes
    ])


def enable_amp(cfg):
    """Switch every ``OptimWrapper`` in ``cfg`` to ``AmpOptimWrapper`` (dynamic loss scale), recursively.

    Handles a plain ``optim_wrapper``, a dict of wrappers (``OptimWrapperDict`` layouts used by GANs and
    :class:`BDLSegmentor`) and the per-stage sub-configs of :class:`BidirectionalLoop`. Returns the number
    of wrappers switched.
    """
    switched = 0

    def visit(node):
        nonlocal switched
        if isinstance(node, dict):
            if node.get('type') == 'OptimWrapper' and 'optimizer' in node:
                node['type'] = 'AmpOptimWrapper'
                node.setdefault('loss_scale', 'dynamic')
                switched += 1
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(cfg)
    return switched


def init_cpu_distributed(cfg):
    """Make ``--launcher pytorch`` work on a machine without CUDA (gloo, CPU DDP). No-op with CUDA.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which fails without a GPU,
    so the process group is started here with gloo (the Runner skips its own initialisation when one exists);
    and its ``wrap_model`` passes ``device_ids=[LOCAL_RANK]``, which DDP refuses for CPU modules, so the
    config's wrapper gets ``device_ids=None`` (see :func:`cpu_model_wrapper`).
    """
    import torch
    import torch.distributed as dist
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cpu_model_wrapper(cfg)
    return True


def cpu_model_wrapper(cfg):
    """Set ``device_ids=None`` on the config's DDP wrapper (added if missing) when there is no GPU."""
    import torch
    if torch.cuda.is_available():
        return
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel', broadcast_buffers=False)
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def apply_global_batch_size(cfg, world_size: int) -> None:
    """Split a config's stated global batch over the processes: ``train_dataloader.batch_size = global // world``.

    A config that states ``global_batch_size`` (F's translation configs: the release trained F with batch 4
    over 4 GPUs) trains with that many images per step on one GPU or on several. A global batch that the world
    size does not divide is refused in one line. No-op without ``global_batch_size``.
    """
    total = cfg.get('global_batch_size')
    if total is None:
        return
    if not isinstance(total, int) or total < 1 or total % world_size:
        raise ValueError(f'global_batch_size={total!r} must be a positive multiple of the number of processes '
                         f'({world_size})')
    cfg.train_dataloader.batch_size = total // world_size
