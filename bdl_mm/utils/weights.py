"""The weights of a checkpoint file, as every loader of M and F here reads them (M for training or evaluation, the
frozen M of F's perceptual loss, F for translation): mmengine's ``state_dict`` entry, or the file's own dict for
a bare state dict, with DDP's ``module.`` prefixes removed."""
from typing import Dict

from mmengine.runner.checkpoint import _load_checkpoint


def checkpoint_weights(path: str) -> Dict:
    """``{name: tensor}`` of the checkpoint at ``path`` (on the CPU), ``module.`` prefixes stripped."""
    ckpt = _load_checkpoint(path, map_location='cpu', logger='current')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
