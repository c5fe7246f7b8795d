# VGG16-FCN8s schedule of BDL: M with Adam (lr 1e-5, betas (0.9, 0.99), biases at 2x lr), D_M with Adam at lr
# 1e-6, learning rates divided by 10 every 50k iterations. The learning rates are the paper's (the release has no VGG
# settings: its defaults are DeepLab's); the biases' 2x and the 50k step are the release's code (the paper says every
# 5k: set step_size=5000 in both schedulers to follow it). lambda_adv = 1e-4 (the paper's) is set in
# configs/_base_/models/bdl_fcn8s_vgg16.py. Same layout as deeplabv2_sgd_poly.py.
segmentor_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-5, betas=(0.9, 0.99)),
    paramwise_cfg=dict(bias_lr_mult=2.))
discriminator_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=1e-6, betas=(0.9, 0.99)))
optim_wrapper = dict(
    constructor='mmagic.MultiOptimWrapperConstructor',
    segmentor=segmentor_optim_wrapper,
    discriminator=discriminator_optim_wrapper)

segmentor_param_scheduler = [dict(type='StepLR', step_size=50000, gamma=0.1, begin=0, by_epoch=False)]
param_scheduler = dict(
    segmentor=segmentor_param_scheduler,
    discriminator=[dict(type='StepLR', step_size=50000, gamma=0.1, begin=0, by_epoch=False)])

# early stop as for DeepLabV2: 80k without pseudo labels, 120k with (train_cfg_ssl)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=5000)
train_cfg_ssl = dict(type='IterBasedTrainLoop', max_iters=120000, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
