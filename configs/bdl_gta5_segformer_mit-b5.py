# BDL (Algorithm 1), GTA5 -> Cityscapes, with MMSeg's SegFormer-B5 (MixVisionTransformer + SegformerHead) as M.
# Everything but M and its optimiser is configs/bdl_gta5.py: data, iteration counts and poly decay (not tuned for
# this M), F with its perceptual loss through this M, pseudo labels. M's optimiser is MMSeg's SegFormer AdamW
# (lr 6e-5, head 10x, no decay on norms and positional blocks). Load MMSeg's ImageNet MiT-B5 (README):
#   python tools/train.py configs/bdl_gta5_segformer_mit-b5.py --cfg-options \
#     model.segmentor.backbone.init_cfg.type=Pretrained model.segmentor.backbone.init_cfg.checkpoint=checkpoints/mit_b5.pth
_base_ = [
    './_base_/models/bdl_segformer_mit-b5.py', './_base_/datasets/uda_gta5_cityscapes.py',
    './_base_/schedules/algorithm1_deeplabv2_sgd_poly.py', './_base_/default_runtime.py'
]
optim_wrapper = dict(
    segmentor=dict(
        _delete_=True,
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
        paramwise_cfg=dict(
            custom_keys=dict(pos_block=dict(decay_mult=0.), norm=dict(decay_mult=0.), head=dict(lr_mult=10.)))))
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py')))
