# BDL (Algorithm 1), GTA5 -> Cityscapes, DeepLabV2-R101, release hyper-parameters, K = 2, N = 2.
#   python tools/train.py configs/bdl_gta5.py --cfg-options load_from=checkpoints/deeplab_init_bdl.pth
# (the release's DeepLab initialisation, converted with: python tools/model_converters/deeplab_resnet101_init.py
#  DeepLab_resnet_pretrained_init-f81d91e8.pth checkpoints/deeplab_init_bdl.pth --drop-classifier --prefix segmentor.)
_base_ = [
    './_base_/models/bdl_deeplabv2_r101.py', './_base_/datasets/uda_gta5_cityscapes.py',
    './_base_/schedules/algorithm1_deeplabv2_sgd_poly.py', './_base_/default_runtime.py'
]
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py')))
