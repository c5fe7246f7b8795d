# DeepLabV2 with ResNet-101 (BDL's segmentation model M, layout of the authors' release: model/deeplab.py).
# Output stride 8, caffe-style blocks, ceil-mode stem pool, all BatchNorm frozen, classifier = sum of four
# dilated 3x3 convs (6, 12, 18, 24). Nothing is downloaded: the ImageNet/COCO initialisation is converted
# with tools/model_converters/deeplab_resnet101_init.py and loaded by the training config.
norm_cfg = dict(type='BN', requires_grad=False)
# Images as loaded (BGR, 0-255) minus the caffe mean, no std division, no channel swap (release).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[104.00698793, 116.66876762, 122.67891434],
    std=[1.0, 1.0, 1.0],
    bgr_to_rgb=False,
    pad_val=0,
    seg_pad_val=255,
    # MMSeg needs size or size_divisor in training; 1 = no padding (source and target sizes differ)
    size_divisor=1)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='DeepLabV2ResNet',
        depth=101,
        in_channels=3,
        stem_channels=64,
        base_channels=64,
        num_stages=4,
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        out_indices=(3, ),
        style='caffe',
        norm_cfg=norm_cfg,
        norm_eval=True,
        init_cfg=None),
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=-1,
        dilations=(6, 12, 18, 24),
        num_classes=19,
        align_corners=True,
        ignore_index=255,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)),  # release: mean over labelled pixels
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
    init_cfg=None)
