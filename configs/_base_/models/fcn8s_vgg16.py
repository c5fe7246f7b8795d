# FCN-8s with VGG16 (BDL's VGG segmentation model M, layout of the authors' release: model/fcn8s.py).
# conv1_1 padding 100, ceil-mode pools, fc6/fc7 as convs, 0.01 * pool4 and 0.0001 * pool3 skip scores,
# crops 5 / 9 / 31, fixed bilinear transposed convs. Nothing is downloaded: release weights are converted
# with tools/model_converters/bdl_release.py.
norm_cfg = None  # VGG16-FCN8s has no normalisation layers
# The release feeds every model the same way (data/__init__.py IMG_MEAN): BGR 0-255 minus the caffe mean, no std
# division (the same mean_bgr as the caffe/pytorch-fcn VGG16 FCN weights).
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
    type='BDLEncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='VGG16FCN',
        in_channels=3,
        base_channels=64,
        fc_channels=4096,
        conv1_padding=100,
        dropout_ratio=0.5,
        init_cfg=None),
    decode_head=dict(
        type='FCN8sHead',
        # VGG16FCN returns (img, pool3, pool4, fc7); the image only gives the final crop its size.
        in_channels=(3, 256, 512, 4096),
        in_index=(0, 1, 2, 3),
        pool4_scale=0.01,
        pool3_scale=0.0001,
        crop_offsets=(5, 9, 31),
        fixed_upsampling=True,
        num_classes=19,
        align_corners=True,
        ignore_index=255,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)),  # release: mean over labelled pixels
    train_cfg=dict(),
    test_cfg=dict(mode='whole', upsample='probs'),  # softmax, then one upsampling of the probabilities (deeplabv2_r101.py)
    init_cfg=None)
