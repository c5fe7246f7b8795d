"""M's weights out of a stage: an mmengine checkpoint (``state_dict`` + ``meta``), written atomically."""
from typing import Optional

from mmengine.runner.checkpoint import get_state_dict, weights_to_cpu

from ..utils.atomic_io import atomic_torch_save


def save_model_checkpoint(model, path: str, submodule: Optional[str] = None, meta: Optional[dict] = None):
    """Save a model's weights as an mmengine checkpoint (``state_dict`` + ``meta``), atomically.

    DDP wrappers are stripped at every depth (``MMSeparateDistributedDataParallel`` wraps each submodule, and
    ``Runner.save_checkpoint`` would keep their ``module.`` in the keys), so a checkpoint written by a
    distributed run loads into a plain model. ``submodule='segmentor'`` saves M alone out of a BDLSegmentor
    (a plain segmentor is saved as it is).
    """
    model = getattr(model, 'module', model)
    if submodule is not None:
        model = getattr(model, submodule, model)
    state = weights_to_cpu(get_state_dict(model))
    atomic_torch_save(dict(state_dict=state, meta=dict(meta or {}, source='bdl_mm')), path)


def export_segmentor_checkpoint(model, path: str):
    """Save M alone (the ``segmentor`` of a BDLSegmentor, or a plain segmentor) as an mmengine checkpoint."""
    save_model_checkpoint(model, path, submodule='segmentor')
