# DeepLabV2 with ResNet-101 (BDL's segmentation model M) as PUBLISHED: the authors' release that trained the paper's
# models and the released checkpoints (liyunsheng13/BDL 7505c2e, model/deeplab.py). Output stride 8, caffe-style
# blocks, ceil-mode stem pool. Documented switches (docs/fidelity.md):
# - classifier: the release sums only the first TWO dilated 3x3 convs (6, 12) of the four it holds
#   (decode_head.summed_branches=2); summed_branches=None gives DeepLabV2 as designed (all four, upstream fix of 2020);
# - BatchNorm: affine parameters frozen, but the release calls model.train(): training normalises with batch
#   statistics and updates the running statistics, which evaluation, SSL and F's perceptual M then use
#   (backbone.norm_eval=False); norm_eval=True freezes the statistics too;
# - prediction: softmax of the 1/8-resolution logits, probabilities upsampled once (bilinear, align_corners=True)
#   to the label / pseudo-label size, then argmax (BDLEncoderDecoder, test_cfg.upsample='probs'): the release's SSL.py,
#   and its evaluation.py from 2019-05-17 (at 7505c2e it upsampled the logits); test_cfg.upsample='logits' is
#   MMSeg's order (logits upsampled, then argmax).
# Nothing is downloaded: the ImageNet/COCO initialisation is converted with
# tools/model_converters/deeplab_resnet101_init.py and loaded by the training config.
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
    type='BDLEncoderDecoder',
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
        norm_eval=False,  # release: model.train() -> batch statistics in training (affine frozen by norm_cfg)
        init_cfg=None),
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=-1,
        dilations=(6, 12, 18, 24),
        summed_branches=2,  # published release: branches 3-4 held but not summed (None: all four)
        bias_init='pytorch',  # release: nn.Conv2d's default bias, weights N(0, 0.01)
        num_classes=19,
        align_corners=True,
        ignore_index=255,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)),  # release: mean over labelled pixels
    train_cfg=dict(),
    test_cfg=dict(mode='whole', upsample='probs'),
    init_cfg=None)
