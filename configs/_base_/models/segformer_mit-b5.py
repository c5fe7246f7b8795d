# SegFormer-B5 as M: MMSeg's own definition, read from the installed package (mmseg::_base_/models/segformer_mit-b0.py:
# MixVisionTransformer + SegformerHead, ImageNet mean/std on RGB) with the MiT-B5 widths and depths of MMSeg's
# segformer_mit-b5 configs. Changed here:
# - no checkpoint URL: nothing is downloaded. MMSeg's ImageNet MiT-B5 (mit_b5_20220624-658746d9.pth, or NVlabs'
#   mit_b5.pth converted with MMSeg's tools/model_converters/mit2mmseg.py) is loaded with --cfg-options
#   model.segmentor.backbone.init_cfg.type=Pretrained model.segmentor.backbone.init_cfg.checkpoint=... (README);
# - no padding to a fixed crop (size_divisor=1), whole-image inference at the evaluation scale (MMSeg's Cityscapes
#   configs slide 1024x1024 windows over 1024x2048 images; BDL evaluates at 1024x512).
# The input normalisation is stated once, in data_preprocessor: F's perceptual loss and the pseudo labels follow it.
_base_ = ['mmseg::_base_/models/segformer_mit-b0.py']
data_preprocessor = dict(size_divisor=1)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(embed_dims=64, num_layers=[3, 6, 40, 3]),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    test_cfg=dict(mode='whole'))
