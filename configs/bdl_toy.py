# Algorithm 1 on the embedded toy data (tools/make_toy_data.py + converters: `make toy`), on the CPU in minutes.
# Same procedure and modules as configs/bdl_gta5.py, with every release behaviour of the flagship (docs/fidelity.md:
# published two-branch classifier, BatchNorm with batch statistics in training, PIL resizing, F's batch of 4, update
# order and per-epoch lr, translation at F's training width, SSL and evaluation on upsampled probabilities).
# Overridden: data roots, image sizes, network depth/width and iteration counts, plus a larger learning rate, which
# a network trained from random weights needs (the real configs start from ImageNet/COCO weights), and M's starting
# point (m_init below).
_base_ = ['./bdl_gta5.py']

toy_root = 'data/toy/'
source_root = toy_root + 'gta5/'
target_root = toy_root + 'cityscapes/'
source_scale = (256, 144)  # release 1280x720, divided by 5
target_scale = (256, 128)  # release 1024x512, divided by 4
width = 16  # ResNet base channels (release 64)

# ------------------------------------------------------------------ M and D_M: a DeepLabV2 on ResNet-18
model = dict(
    segmentor=dict(
        backbone=dict(depth=18, stem_channels=width, base_channels=width),
        decode_head=dict(in_channels=width * 8)),
    discriminator=dict(base_channels=16))

# ------------------------------------------------------------------ data
source_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=source_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='PackSegInputs')
]
target_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=target_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='LoadPseudoLabel'),
    dict(type='PackUDAInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=target_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        source=dict(data_root=source_root, pipeline=source_pipeline),
        target=dict(data_root=target_root, pipeline=target_pipeline)))
val_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(data_root=target_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# ------------------------------------------------------------------ optimisation (random init: larger steps)
m_iters = 400
optim_wrapper = dict(segmentor=dict(optimizer=dict(lr=5e-3)), discriminator=dict(optimizer=dict(lr=1e-3)))
param_scheduler = dict(
    segmentor=[dict(type='PolyLR', power=0.9, eta_min=0., begin=0, end=m_iters, by_epoch=False)],
    discriminator=[dict(type='PolyLR', power=0.9, eta_min=0., begin=0, end=m_iters, by_epoch=False)])
m_loop = dict(type='IterBasedTrainLoop', max_iters=m_iters, val_interval=m_iters)
default_hooks = dict(
    logger=dict(interval=50), checkpoint=dict(interval=50, max_keep_ckpts=1), visualization=dict(draw=False))

# ------------------------------------------------------------------ F: a small CycleGAN on small crops
# F's crop keeps the release's share of the scaled image: the release crops 452 of 1024 (44 %); 44 % of the toy's 256 is
# 113, so 112 (a multiple of 4 for the generator's two stride-2 stages). A quarter of the width (64) was too small for
# F to learn the translation (docs/experiments/toy.md, "Why the toy config's settings").
f_crop = (112, 112)
f_keys = ['img_source', 'img_target']
# An epoch is max(#source, #target) = 48 images, 12 steps of the release's batch of 4; constant lr for half, then
# linear decay. 60 epochs = 720 steps (the release: about 125k); a quarter of that was too few for F to learn the
# translation (docs/experiments/toy.md, "Why the toy config's settings").
f_epochs = 60
f_lr = 2e-3  # release 2e-4 (random init: larger steps, as for M)
# the release's per-epoch schedule (configs/translation/perceptual_cyclegan_base.py) with niter = f_epochs // 2
f_decay = [dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=f_epochs // 2 - 2,
                end=f_epochs)]
translation_cfg_options = dict(
    model=dict(generator=dict(base_channels=8, num_blocks=2), discriminator=dict(base_channels=8)),
    train_dataloader=dict(
        num_workers=0,
        persistent_workers=False,
        dataset=dict(  # F reads M's source and target folders (train_dataloader.dataset above)
            pipeline=[
                dict(type='mmagic.LoadImageFromFile', key='img_source', color_type='color', channel_order='bgr'),
                dict(type='mmagic.LoadImageFromFile', key='img_target', color_type='color', channel_order='bgr'),
                dict(type='mmagic.ScaleWidth', keys=f_keys, width=256, interpolation='bicubic'),
                dict(type='mmagic.Crop', keys=f_keys, crop_size=f_crop, random_crop=True),
                dict(type='mmagic.Flip', keys=['img_source'], direction='horizontal'),
                dict(type='mmagic.Flip', keys=['img_target'], direction='horizontal'),
                dict(type='mmagic.PackInputs', keys=f_keys, data_keys=f_keys,
                     meta_keys=['img_source_path', 'img_target_path', 'img_source_channel_order',
                                'img_target_channel_order']),
            ])),
    train_cfg=dict(max_epochs=f_epochs),
    optim_wrapper=dict(generators=dict(optimizer=dict(lr=f_lr)), discriminators=dict(optimizer=dict(lr=f_lr))),
    param_scheduler=dict(generators=f_decay, discriminators=f_decay),
    default_hooks=dict(logger=dict(interval=120), checkpoint=dict(interval=5, max_keep_ckpts=1)))

# ------------------------------------------------------------------ Algorithm 1 (K = 2, N = 2 as the paper)
# References (results.md, after the run's own stages): the target-supervised oracle (M trained on the target's train
# labels) and two translation baselines in F's place, each through the same plan with K = 1 (they do not depend on
# M) from this run's M(0): FDA (Yang & Soatto 2020) and a per-channel colour transfer (Reinhard et al. 2001).
# m_init='source_only': every adaptation run starts from M(0). The release starts every M run from a segmentation
# model pretrained on another domain (the COCO DeepLab initialisation); the toy has no pretrained weights, and from
# random weights each M run relearns everything in its 400 iterations, and the stages of one plan then differ from
# noise alone (docs/experiments/toy.md, "Why the toy config's settings"). M(0), trained on the source, is the
# toy's pretrained model.
train_cfg = dict(
    m_init='source_only',
    references=dict(
        oracle=dict(),
        fda=dict(translation=dict(type='FDA', beta=0.01)),
        reinhard=dict(translation=dict(type='Reinhard'))),
    stages=dict(
        source_only=dict(train_cfg=m_loop),
        translation=dict(cfg_options=translation_cfg_options),
        translate=dict(batch_size=1, num_workers=0),
        adaptation=dict(train_cfg=m_loop),
        ssl_adaptation=dict(train_cfg=m_loop)))
