# Training F (BDL Eq. 2) on unpaired source / Cityscapes images, the release's schedule and data pipeline (its
# pytorch-CycleGAN options as the 2020 cyclegan readme lists them; the 2019 one says "standard parameters,
# --lambda_semantic 1": docs/fidelity.md):
# images scaled to width 1024 with PIL bicubic (pytorch-CycleGAN's scale_width: height truncated), random 452x452
# crops, random horizontal flips (pytorch-CycleGAN default, no --no_flip), global batch 4 (the readme: batch 4 over
# 4 GPUs; `global_batch_size` below, split over the GPUs by the BDL loop), Adam lr 2e-4 betas (0.5, 0.999) for
# generators and discriminators, release update order (generators, then discriminators), 20 epochs: constant lr,
# then linear decay to 0, stepped once per epoch as in the release (the values per epoch below; docs/fidelity.md).
# An epoch is max(#source, #target) samples (pytorch-CycleGAN's unaligned dataset): 24,966 for GTA5, 9,400 for
# SYNTHIA. Experiments set train_dataloader.dataset.source and model.segmentor.checkpoint (M(k-1)).
_base_ = ['../_base_/models/perceptual_cycle_gan.py', '../_base_/default_runtime.py']

keys = ['img_source', 'img_target']
# 2020 cyclegan readme: --resize_or_crop scale_width_and_crop --loadSize 1024 --fineSize 452 (PIL bicubic, ScaleWidth);
# the paper: random 452x452 crops
load_width = 1024
crop_size = (452, 452)
# The readme trains F with batch 4 on 4 GPUs (one image per GPU). The global batch is stated here; the BDL loop
# sets train_dataloader.batch_size = global_batch_size // world_size (1 GPU: 4 per step; 4 GPUs: 1 each).
global_batch_size = 4
train_pipeline = [
    dict(type='mmagic.LoadImageFromFile', key='img_source', color_type='color', channel_order='bgr'),
    dict(type='mmagic.LoadImageFromFile', key='img_target', color_type='color', channel_order='bgr'),
    dict(type='mmagic.ScaleWidth', keys=keys, width=load_width, interpolation='bicubic'),
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
    batch_size=global_batch_size,  # per process: tools/train.py and the BDL loop divide it by the world size
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
decay_begin = 10  # pytorch-CycleGAN --niter 10 --niter_decay 10
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# The release's schedule exactly: pytorch-CycleGAN's LambdaLR, stepped at the end of every epoch,
# lr(epoch e, 0-based) = 1 - max(0, e + 2 - niter) / (niter_decay + 1): epochs 1-9 at 2e-4, then 10/11, 9/11, ...,
# 1/11 of it, and the 20th epoch at 0. One scheduler list per optimiser. (Per-iteration linear decay, MMagic's
# usual form: one LinearLR with convert_to_iter_based=True from decay_begin to max_epochs; docs/fidelity.md.)
# (mmengine's LinearLR reaches end_factor at epoch end - 1: here 1 at epoch index 8, 0 at index 19.)
lr_decay = [dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=decay_begin - 2,
                 end=max_epochs)]
param_scheduler = dict(generators=lr_decay, discriminators=lr_decay)

default_hooks = dict(
    logger=dict(interval=100, log_metric_by_epoch=True),
    checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=3, save_optimizer=True))
model_wrapper_cfg = dict(
    type='MMSeparateDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
log_processor = dict(by_epoch=True)
tta_model = None
