"""Helpers of the tests: import tools/ scripts, make converted toy data in the real on-disk formats, a tiny CycleGAN."""
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(rel_path):
    """Import a script under tools/ as a module."""
    name = 'tool_' + rel_path.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'tools', rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(rel_path, *argv):
    module = load_tool(rel_path)
    old = sys.argv
    sys.argv = [rel_path, *map(str, argv)]
    try:
        module.main()
    finally:
        sys.argv = old


def make_converted_toy(out_dir, **kwargs):
    load_tool('make_toy_data.py').make_toy_data(str(out_dir), **kwargs)
    run_tool('dataset_converters/gta5.py', osp.join(out_dir, 'gta5'))
    run_tool('dataset_converters/cityscapes.py', osp.join(out_dir, 'cityscapes'))
    return str(out_dir)


def write_bdl_config(path, toy_root, m_iters=2, ckpt_interval=1, loop_options='', extra=''):
    """configs/bdl_toy.py on a converted toy pair under ``toy_root``, K = N = 1, a few iterations per stage.
    ``loop_options``: more ``train_cfg`` arguments (``'use_ssl=False,'``); ``extra``: more config lines."""
    src, tgt = osp.join(toy_root, 'gta5/'), osp.join(toy_root, 'cityscapes/')
    if 'references=' not in loop_options:  # the toy config's reference rows (oracle, baselines) are not tested here
        loop_options = 'references=None, ' + loop_options
    path.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'bdl_toy.py')!r}]
train_dataloader = dict(dataset=dict(source=dict(data_root={src!r}), target=dict(data_root={tgt!r})))
val_dataloader = dict(dataset=dict(data_root={tgt!r}))
test_dataloader = val_dataloader
fast = dict(type='IterBasedTrainLoop', max_iters={m_iters}, val_interval={m_iters})
default_hooks = dict(checkpoint=dict(interval={ckpt_interval}), logger=dict(interval=1))
train_cfg = dict(
    K=1, N=1, {loop_options}
    stages=dict(
        source_only=dict(train_cfg=fast), adaptation=dict(train_cfg=fast), ssl_adaptation=dict(train_cfg=fast),
        translation=dict(cfg_options=dict(
            train_dataloader=dict(dataset=dict(source=dict(data_root={src!r}), target=dict(data_root={tgt!r}))),
            train_cfg=dict(max_epochs=1)))))
{extra}
''')
    return str(path)


F_KEYS = ['img_source', 'img_target']


def gan_cfg(**kwargs):
    """MMagic CycleGAN arguments at test size (4-channel, 1-block generators, 3-layer PatchGANs), ``kwargs`` on top."""
    cfg = dict(
        data_preprocessor=dict(type='DataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3, output_channel_order='RGB',
                               data_keys=F_KEYS),
        generator=dict(type='ResnetGenerator', in_channels=3, out_channels=3, base_channels=4, num_blocks=1,
                       norm_cfg=dict(type='IN')),
        discriminator=dict(type='PatchDiscriminator', in_channels=3, base_channels=4, num_conv=3,
                           norm_cfg=dict(type='IN')),
        default_domain='target', reachable_domains=['source', 'target'], related_domains=['source', 'target'],
        loss_config=dict(cycle_loss_weight=10., id_loss_weight=5.))
    cfg.update(kwargs)
    return cfg


def reinhard_by_hand(src_path, target_paths):
    """Reinhard's colour transfer of one image, computed here from its definition: the image's l-alpha-beta values
    moved from their own mean and sd to those of the target images' pixels taken together (BGR float, unrounded)."""
    import numpy as np

    from bdl_mm.models.translators.colour_transfer import bgr_to_lalphabeta, lalphabeta_to_bgr
    from bdl_mm.models.translators.translation_baseline import read_image
    pixels = np.concatenate([bgr_to_lalphabeta(read_image(p)).reshape(-1, 3) for p in target_paths])
    lab = bgr_to_lalphabeta(read_image(src_path))
    moved = (lab - lab.mean((0, 1))) / lab.std((0, 1)) * pixels.std(0) + pixels.mean(0)
    return np.clip(lalphabeta_to_bgr(moved), 0, 255)
