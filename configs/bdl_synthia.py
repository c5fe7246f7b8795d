# BDL (Algorithm 1), SYNTHIA-RAND-CITYSCAPES -> Cityscapes, DeepLabV2-R101, K = 2, N = 2. UDAIoUMetric reports
# mIoU16 and mIoU13 (the paper's SYNTHIA protocols) beside mIoU over 19 classes.
_base_ = [
    './_base_/models/bdl_deeplabv2_r101.py', './_base_/datasets/uda_synthia_cityscapes.py',
    './_base_/schedules/algorithm1_deeplabv2_sgd_poly.py', './_base_/default_runtime.py'
]
train_cfg = dict(
    stages=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_synthia-to-cityscapes.py')))
