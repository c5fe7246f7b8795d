# GTA5 as the source domain (24,966 images, all used for training as in the release), evaluated on Cityscapes val.
# Source variables are prefixed `source_` so that this file and synthia.py are interchangeable and do not clash
# with the Cityscapes (target / test) variables inherited from cityscapes.py.
# Labels: labels/*_labelTrainIds.png and train.txt from tools/dataset_converters/gta5.py.
_base_ = ['./cityscapes.py']
source_type = 'GTA5Dataset'
source_root = 'data/gta5/'
source_scale = (1280, 720)  # (w, h): the release resizes GTA5 to 1280x720 (no crop, no flip)
source_crop_size = (720, 1280)  # (h, w) of the network input
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
# data_prefix is spelled out so that a translated copy only overrides img_path (labels stay in labels/)
source_train = dict(
    type=source_type,
    data_root=source_root,
    ann_file='train.txt',
    data_prefix=dict(img_path='images', seg_map_path='labels'),
    pipeline=source_train_pipeline)
# source-only training (M(0)); validation and test on Cityscapes val come from cityscapes.py
train_dataloader = dict(dataset=dict(_delete_=True, **source_train))
