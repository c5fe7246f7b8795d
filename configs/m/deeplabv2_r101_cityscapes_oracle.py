# Target-supervised upper bound: deeplabv2_r101 trained on Cityscapes train with its labels (EncoderDecoder),
# evaluated on Cityscapes val (paper: 65.1 R101 / 60.3 VGG16 for GTA5). Same optimiser and schedule as M.
_base_ = [
    '../_base_/models/deeplabv2_r101.py', '../_base_/datasets/cityscapes.py', '../_base_/schedules/deeplabv2_sgd_poly.py',
    '../_base_/default_runtime.py'
]
optim_wrapper = dict(_delete_=True, **_base_.segmentor_optim_wrapper)
param_scheduler = _base_.segmentor_param_scheduler
