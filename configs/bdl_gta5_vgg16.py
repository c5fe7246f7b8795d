# BDL (Algorithm 1), GTA5 -> Cityscapes, VGG16-FCN8s (Adam, lambda_adv 1e-4, release step decay), K = 2, N = 2.
# F's perceptual loss runs this config's M (the translation config's M architecture is replaced by the loop).
_base_ = [
    './_base_/models/bdl_fcn8s_vgg16.py', './_base_/datasets/uda_gta5_cityscapes.py',
    './_base_/schedules/algorithm1_fcn8s_adam_step.py', './_base_/default_runtime.py'
]
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py')))
