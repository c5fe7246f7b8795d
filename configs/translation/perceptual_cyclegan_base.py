# Training F (BDL Eq. 2) on unpaired source / Cityscapes images, release schedule and data pipeline:
# images scaled to width 1024 (keep ratio), random 452x452 crops, random horizontal flips (pytorch-CycleGAN
# default, no --no_flip), batch 1, Adam lr 2e-4 betas (0.5, 0.999) for generators and discriminators,
# 20 epochs: constant lr for 10, then linear decay to 0 (per iteration) over the last 10.
# An epoch is max(#source, #target) samples (pytorch-CycleGAN's unaligned dataset): 24,966 for GTA5, 9,400 for
# SYNTHIA. Experiments set train_dataloader.dataset.source and model.segmentor.checkpoint (M(k-1)).
_base_ = ['../_base_/models/perceptual_cycle_gan.py', '../_base_/default_runtime.py']

keys = ['img_source', 'img_target']
# mmagic Resize with keep_ratio fits the image into scale: the long edge, i.e. the width of these landscape data
# sets, becomes 1024 (release: --resize_or_crop scale_width_and_crop --loadSize 1024 --fineSize 452).
load_scale = (1024, 1024)
crop_size = (452, 452)
train_pipeline = [
    dict(type='mmagic.LoadImageFromFile', key='img_source', color_type='color', channel_order='bgr'),
    dict(type='mmagic.LoadImageFromFile', key='img_target', color_type='color', channel_order='bgr'),
    dict(type='mmagic.Resize', keys=keys, scale=load_scale, keep_ratio=True, interpolation='bicubic'),
    dict(type='mmagic.Crop', keys=keys, crop_size=crop_size, random_crop=True),
    dict(type='mmagic.Flip', keys=['img_source'], direction='horizontal'),
    dict(type='mmagic.Flip', keys=['img_target'], direction='horizontal'),
    dict(
        type='mmagic.PackInputs',
        keys=keys,
        data_keys=keys,
        meta_keys=['img_source_path', 'img_target_path', 'img_source_channel_order', 'img_target_channel_order']),
]
train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='mmagic.UnpairedTranslationDataset',
        source=dict(data_root='data/gta5', img_dir='images', img_suffix='.png'),
        target=dict(data_root='data/cityscapes', img_dir='leftImg8bit/train', img_suffix='_leftImg8bit.png'),
        pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None

optim_wrapper = dict(
    constructor='mmagic.MultiOptimWrapperConstructor',
    generators=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999))),
    discriminators=dict(optimizer=dict(type='Adam', lr=2e-4, betas=(0.5, 0.999))))
max_epochs = 20
decay_begin = 10
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# One scheduler list per optimiser; converted to iterations with the dataloader length.
lr_decay = [
    dict(
        type='LinearLR',
        start_factor=1.0,
        end_factor=0.0,
        by_epoch=True,
        begin=decay_begin,
        end=max_epochs,
        convert_to_iter_based=True)
]
param_scheduler = dict(generators=lr_decay, discriminators=lr_decay)

default_hooks = dict(
    logger=dict(interval=100, log_metric_by_epoch=True),
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=3, save_optimizer=True))
model_wrapper_cfg = dict(
    type='MMSeparateDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
log_processor = dict(by_epoch=True)
tta_model = None
