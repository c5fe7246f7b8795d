# BDL (Algorithm 1), GTA5 -> Cityscapes, VGG16-FCN8s, K = 2, N = 2: the release's FCN8s and its VGG step decay (every
# 50k iterations), with the paper's VGG settings (Adam lr 1e-5, D_M lr 1e-6, lambda_adv 1e-4; the release has none
# of its own). F's perceptual loss runs this config's M (the translation config's M architecture is replaced by the
# loop). Every M run starts from the release's GTA5 FCN8s initial weights ("initial weights of GTA5 for VGG16-FCN",
# loaded strictly; SYNTHIA has its own file: configs/bdl_synthia_vgg16.py), converted with
# tools/model_converters/bdl_release.py --model fcn8s --prefix segmentor.:
#   python tools/train.py configs/bdl_gta5_vgg16.py --cfg-options load_from=checkpoints/fcn8s_vgg16_gta5_init.pth
_base_ = [
    './_base_/models/bdl_fcn8s_vgg16.py', './_base_/datasets/uda_gta5_cityscapes.py',
    './_base_/schedules/algorithm1_fcn8s_adam_step.py', './_base_/default_runtime.py'
]
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py')))
