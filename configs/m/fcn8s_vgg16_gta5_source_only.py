# M(0) of Table 1: fcn8s_vgg16 trained on GTA5 only (plain MMSeg EncoderDecoder, no D_M), evaluated on Cityscapes
# val. Same optimiser and schedule as the adapted runs (configs/_base_/schedules/fcn8s_adam_step.py, M part only).
_base_ = [
    '../_base_/models/fcn8s_vgg16.py', '../_base_/datasets/gta5.py', '../_base_/schedules/fcn8s_adam_step.py',
    '../_base_/default_runtime.py'
]
optim_wrapper = dict(_delete_=True, **_base_.segmentor_optim_wrapper)
param_scheduler = _base_.segmentor_param_scheduler
