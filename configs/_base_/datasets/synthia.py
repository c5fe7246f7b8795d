# SYNTHIA-RAND-CITYSCAPES as the source domain (9,400 images, all used for training), evaluated on Cityscapes val.
# Source variables are prefixed `source_` so that this file and gta5.py are interchangeable and do not clash
# with the Cityscapes (target / test) variables inherited from cityscapes.py.
# Labels: GT/LABELS/*_labelTrainIds.png and train.txt from tools/dataset_converters/synthia.py. Report
# mIoU16 / mIoU13 of UDAIoUMetric (paper: 16 classes with VGG16, 13 classes with ResNet-101).
_base_ = ['./cityscapes.py']
source_type = 'SynthiaDataset'
source_root = 'data/synthia/'
source_scale = (1280, 760)  # (w, h): the release uses SYNTHIA at 1280x760 (no crop, no flip)
source_crop_size = (760, 1280)  # (h, w) of the network input
source_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=source_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='PackSegInputs')
]
source_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=source_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# data_prefix is spelled out so that a translated copy only overrides img_path (labels stay in GT/LABELS/)
source_train = dict(
    type=source_type,
    data_root=source_root,
    ann_file='train.txt',
    data_prefix=dict(img_path='RGB', seg_map_path='GT/LABELS'),
    pipeline=source_train_pipeline)
# source-only training (M(0)); validation and test on Cityscapes val come from cityscapes.py
train_dataloader = dict(dataset=dict(_delete_=True, **source_train))
