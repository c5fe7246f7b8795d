# Cityscapes: the target domain (train, 2,975 images, unlabelled for adaptation) and the test set (val, 500).
# Release input format: images resized to 1024x512 (no random crop, no flip), BGR 0-255; the DeepLabV2 mean
# subtraction is the SegDataPreProcessor of the model config (mean 104.00698793, 116.66876762, 122.67891434,
# std 1, bgr_to_rgb=False). Labels: *_gtFine_labelTrainIds.png from tools/dataset_converters/cityscapes.py.
dataset_type = 'CityscapesDataset'
data_root = 'data/cityscapes/'
img_scale = (1024, 512)  # (w, h), release size of the target and the test images
crop_size = (512, 1024)  # (h, w) of the network input (= the resized image; no crop)
# Resizing as the release (data/*_dataset.py): PIL, images BICUBIC, labels NEAREST (mmcv's pillow backend resizes
# the labels with 'nearest' whatever `interpolation` says). MMSeg's default (cv2 bilinear) is backend='cv2'.

# Target-supervised training (upper bound / oracle): same size as the adapted runs.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=img_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='PackSegInputs')
]
# Evaluation: the label is loaded after Resize and stays 2048x1024; the segmentor upsamples its logits to
# ori_shape (bilinear, align_corners of the decode head), UDAIoUMetric compares at full resolution (release).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# Target side of UDADataset: no ground truth; pseudo labels (if the wrapper has a pseudo_label_dir) are loaded
# after Resize at the resized size (255 = ignored), soft weights packed by PackUDAInputs.
target_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='LoadPseudoLabel'),
    dict(type='PackUDAInputs')
]
target_train = dict(
    type=dataset_type, data_root=data_root, data_prefix=dict(img_path='leftImg8bit/train'),
    pipeline=target_train_pipeline)

train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# mIoU (19 classes), mIoU16, mIoU13 and per-class IoU in the paper's column order
val_evaluator = dict(type='UDAIoUMetric')
test_evaluator = val_evaluator
