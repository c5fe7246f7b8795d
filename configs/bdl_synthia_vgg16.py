# BDL (Algorithm 1), SYNTHIA -> Cityscapes, VGG16-FCN8s, K = 2, N = 2 (mIoU16 is the paper's VGG16 protocol).
_base_ = [
    './_base_/models/bdl_fcn8s_vgg16.py', './_base_/datasets/uda_synthia_cityscapes.py',
    './_base_/schedules/algorithm1_fcn8s_adam_step.py', './_base_/default_runtime.py'
]
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_synthia-to-cityscapes.py')))
