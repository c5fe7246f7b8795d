"""Saves F's image pool (the CycleGAN history of generated images) with every checkpoint, restores it on resume."""
from typing import Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

CHECKPOINT_KEY = 'bdl_image_pool'


def _image_buffers(runner) -> dict:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    buffers = getattr(model, 'image_buffers', None) or {}
    return {domain: buf for domain, buf in buffers.items() if getattr(buf, 'buffer_size', 0) > 0}


@HOOKS.register_module()
class ImagePoolCheckpointHook(Hook):
    """Keep a CycleGAN's image pools across a resume (docs/reliability.md, section 4).

    MMagic's ``CycleGAN`` (and :class:`~bdl_mm.models.translators.PerceptualCycleGAN`) trains its discriminators on a
    history of generated images, one ``GANImageBuffer`` per domain (pytorch-CycleGAN's image pool, 50 images), held
    outside the state dict: a resumed F starts with empty pools, and its discriminators see other images than in
    the uninterrupted run. This hook saves each pool (its count and images, on the CPU) under the checkpoint key
    ``bdl_image_pool`` (``before_save_checkpoint``) and, on resume (the train loop at the checkpoint's iteration),
    puts it back on the model's device before training goes on (``before_train``). A model without pools is left
    alone. Cost: the pool's images in each checkpoint, 4 x 3 x H x W bytes per image (release, 452 x 452 crops:
    2.45 MB per image, 245 MB for two pools of 50). Under torch.distributed only rank 0's pools are saved (rank 0
    writes the checkpoint) and restored; the other ranks start with empty pools, as before.
    :class:`BidirectionalLoop` adds this hook to F's stage.
    """

    priority = 'LOW'

    def __init__(self):
        self._pending: Optional[tuple] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        buffers = _image_buffers(runner)
        if buffers:
            checkpoint[CHECKPOINT_KEY] = {
                domain: dict(img_num=int(buf.img_num), images=[img.detach().cpu() for img in buf.image_buffer])
                for domain, buf in buffers.items()
            }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        pools = checkpoint.get(CHECKPOINT_KEY) if get_rank() == 0 else None  # rank 0's pools: its own images
        self._pending = None if pools is None else (pools, (checkpoint.get('meta') or {}).get('iter'))

    def before_train(self, runner) -> None:
        if self._pending is None:
            return
        pools, saved_iter = self._pending
        self._pending = None
        if not runner.iter or runner.iter != saved_iter:  # a load_from, not a resume: start with empty pools
            return
        buffers = _image_buffers(runner)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        device = next(model.parameters()).device
        for domain, pool in pools.items():
            if domain in buffers:
                buffers[domain].img_num = pool['img_num']
                buffers[domain].image_buffer = [img.to(device) for img in pool['images']]
        runner.logger.info('image pools restored: ' + ', '.join(
            f'{domain} {pool["img_num"]} image(s)' for domain, pool in pools.items() if domain in buffers))
