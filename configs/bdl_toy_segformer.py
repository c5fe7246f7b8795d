# Algorithm 1 on the embedded toy data (configs/bdl_toy.py) with MMSeg's SegFormer as M: a toy-width
# MixVisionTransformer (embed_dims 16, one block per stage) + SegformerHead, from random weights, on the CPU in minutes.
# Only the segmentor is replaced. Its input normalisation (ImageNet mean/std on RGB, MMSeg's SegFormer) is written
# once, in its data_preprocessor: BDLSegmentor, F's perceptual loss (seg_input) and the pseudo labels follow it.
# Everything else is the toy's: data, D_M (19 input channels = num_classes), F, SGD with the decode head at 10x,
# iteration counts.
_base_ = ['./bdl_toy.py']

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    segmentor=dict(
        _delete_=True,
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255,
            size_divisor=1),
        backbone=dict(
            type='MixVisionTransformer',
            in_channels=3,
            embed_dims=16,
            num_stages=4,
            num_layers=[1, 1, 1, 1],
            num_heads=[1, 2, 4, 8],
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3),
            mlp_ratio=4,
            qkv_bias=True,
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.1),
        decode_head=dict(
            type='SegformerHead',
            in_channels=[16, 32, 64, 128],
            in_index=[0, 1, 2, 3],
            channels=64,
            dropout_ratio=0.1,
            num_classes=19,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole')))
