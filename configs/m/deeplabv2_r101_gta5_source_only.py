# M(0) of Table 1: deeplabv2_r101 trained on GTA5 only (plain MMSeg EncoderDecoder, no D_M), evaluated on Cityscapes
# val. Same optimiser and schedule as the adapted runs (configs/_base_/schedules/deeplabv2_sgd_poly.py, M part only).
_base_ = [
    '../_base_/models/deeplabv2_r101.py', '../_base_/datasets/gta5.py', '../_base_/schedules/deeplabv2_sgd_poly.py',
    '../_base_/default_runtime.py'
]
optim_wrapper = dict(_delete_=True, **_base_.segmentor_optim_wrapper)
param_scheduler = _base_.segmentor_param_scheduler
