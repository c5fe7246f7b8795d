# DeepLabV2-R101 schedule of BDL (authors' release): M with SGD, D_M with Adam, both poly-decayed over 250k
# iterations, training stopped early at 80k iterations (runs with pseudo labels: 120k, see
# `train_cfg_ssl`). Batch 1 per domain, one parameter update per iteration.
#
# Layout: one OptimWrapper per sub-module of BDLSegmentor (`segmentor`, `discriminator`), built by MMagic's
# MultiOptimWrapperConstructor; each sub-wrapper keeps type='OptimWrapper' so `--amp` can turn each one into
# an AmpOptimWrapper. Configs that train a plain EncoderDecoder (source only, oracle) use
# `segmentor_optim_wrapper` and `segmentor_param_scheduler` on their own.
segmentor_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2.5e-4, momentum=0.9, weight_decay=5e-4),
    # classifier (decode head) at 10x the backbone's learning rate
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.)}))
discriminator_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.99)))
optim_wrapper = dict(
    constructor='mmagic.MultiOptimWrapperConstructor',
    segmentor=segmentor_optim_wrapper,
    discriminator=discriminator_optim_wrapper)

# lr = base_lr * (1 - iter / 250000) ** 0.9 for both optimisers
segmentor_param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0., begin=0, end=250000, by_epoch=False)]
param_scheduler = dict(
    segmentor=segmentor_param_scheduler,
    discriminator=[dict(type='PolyLR', power=0.9, eta_min=0., begin=0, end=250000, by_epoch=False)])

# release: early stop at 80k iterations without pseudo labels; with pseudo labels (SSL runs) use train_cfg_ssl
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=5000)
train_cfg_ssl = dict(type='IterBasedTrainLoop', max_iters=120000, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# checkpoints: default_runtime's CheckpointHook (by_epoch=False, interval=5000), as the release's save_pred_every
