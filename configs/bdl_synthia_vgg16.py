# BDL (Algorithm 1), SYNTHIA -> Cityscapes, VGG16-FCN8s, K = 2, N = 2 (mIoU16 is the paper's VGG16 protocol): the
# settings of configs/bdl_gta5_vgg16.py. Every M run starts from the release's SYNTHIA FCN8s initial weights ("initial
# weights of SYNTHIA for VGG16-FCN", loaded strictly; not the GTA5 file), converted with
# tools/model_converters/bdl_release.py --model fcn8s --prefix segmentor.:
#   python tools/train.py configs/bdl_synthia_vgg16.py --cfg-options load_from=checkpoints/fcn8s_vgg16_synthia_init.pth
_base_ = [
    './_base_/models/bdl_fcn8s_vgg16.py', './_base_/datasets/uda_synthia_cityscapes.py',
    './_base_/schedules/algorithm1_fcn8s_adam_step.py', './_base_/default_runtime.py'
]
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_synthia-to-cityscapes.py')))
