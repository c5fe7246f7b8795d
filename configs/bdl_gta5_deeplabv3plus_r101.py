# BDL (Algorithm 1), GTA5 -> Cityscapes, with MMSeg's DeepLabV3+ on ResNetV1c-101 as M (DepthwiseSeparableASPPHead,
# plus its FCNHead auxiliary head, trained on the source labels and on the pseudo labels as MMSeg trains it).
# Everything but M and its batch (below) is configs/bdl_gta5.py: data, the release's schedule and iteration counts (not tuned for this
# M), F with its perceptual loss through this M, pseudo labels. Load MMSeg's ImageNet ResNetV1c-101 (README):
#   python tools/train.py configs/bdl_gta5_deeplabv3plus_r101.py --cfg-options \
#     model.segmentor.backbone.init_cfg.type=Pretrained model.segmentor.backbone.init_cfg.checkpoint=checkpoints/resnet101_v1c.pth
_base_ = [
    './_base_/models/bdl_deeplabv3plus_r101.py', './_base_/datasets/uda_gta5_cityscapes.py',
    './_base_/schedules/algorithm1_deeplabv2_sgd_poly.py', './_base_/default_runtime.py'
]
# MMSeg's ASPP head pools the whole image and normalises it with BatchNorm, which needs more than one image per
# training batch: 2 per domain (MMSeg trains this M with 2 images per GPU); with 1 it fails with "Expected more than
# 1 value per channel when training".
train_dataloader = dict(batch_size=2)
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py')))
