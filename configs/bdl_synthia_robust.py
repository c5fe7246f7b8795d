# BDL (Algorithm 1), SYNTHIA -> Cityscapes, DeepLabV2-R101 (configs/bdl_synthia.py) with the project's robust recipe
# for the later stages (configs/_base_/recipes/robust_ssl.py): not the release's; configs/bdl_synthia.py is the release.
#   python tools/train.py configs/bdl_synthia_robust.py --cfg-options load_from=checkpoints/deeplab_init_bdl.pth
_base_ = ['./bdl_synthia.py', './_base_/recipes/robust_ssl.py']
train_cfg = _base_.robust_train_cfg
model = _base_.robust_model
