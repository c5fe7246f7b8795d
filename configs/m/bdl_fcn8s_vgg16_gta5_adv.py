# M(1) of Table 1: fcn8s_vgg16 adapted GTA5 -> Cityscapes with the output-space discriminator D_M only (Eq. 1 and
# Eq. 3 without translation and without pseudo labels); the source images are the original GTA5 images.
# For later rounds of Algorithm 1 the source img_path points to a translated copy and the target dataset gets
# pseudo_label_dir (then use train_cfg = _base_.train_cfg_ssl, 120k iterations).
_base_ = [
    '../_base_/models/bdl_fcn8s_vgg16.py', '../_base_/datasets/uda_gta5_cityscapes.py',
    '../_base_/schedules/fcn8s_adam_step.py', '../_base_/default_runtime.py'
]
