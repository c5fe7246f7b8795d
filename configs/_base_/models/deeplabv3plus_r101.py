# DeepLabV3+ with ResNetV1c-101 (output stride 8) as M: MMSeg's own definition, read from the installed package
# (mmseg::_base_/models/deeplabv3plus_r50-d8.py: DepthwiseSeparableASPPHead on ResNetV1c, FCNHead auxiliary head on
# stage 3 with loss weight 0.4, SyncBN, ImageNet mean/std on RGB), at depth 101 as MMSeg's deeplabv3plus_r101-d8
# configs. Changed here:
# - pretrained=None: nothing is downloaded. MMSeg's ImageNet ResNetV1c-101 (open-mmlab://resnet101_v1c) is loaded
#   with --cfg-options model.segmentor.backbone.init_cfg.type=Pretrained
#   model.segmentor.backbone.init_cfg.checkpoint=checkpoints/resnet101_v1c.pth (README, "Other segmentors as M");
# - no padding to a fixed crop (size_divisor=1): the source and target images differ in size.
# The input normalisation is stated once, in data_preprocessor: F's perceptual loss and the pseudo labels follow it.
_base_ = ['mmseg::_base_/models/deeplabv3plus_r50-d8.py']
data_preprocessor = dict(size_divisor=1)
model = dict(pretrained=None, data_preprocessor=data_preprocessor, backbone=dict(depth=101))
