# Target-supervised upper bound: fcn8s_vgg16 trained on Cityscapes train with its labels (plain EncoderDecoder),
# evaluated on Cityscapes val (paper: 65.1 R101 / 60.3 VGG16 for GTA5). Same optimiser and schedule as M.
_base_ = [
    '../_base_/models/fcn8s_vgg16.py', '../_base_/datasets/cityscapes.py', '../_base_/schedules/fcn8s_adam_step.py',
    '../_base_/default_runtime.py'
]
optim_wrapper = dict(_delete_=True, **_base_.segmentor_optim_wrapper)
param_scheduler = _base_.segmentor_param_scheduler
