# BDL (Algorithm 1), SYNTHIA -> Cityscapes, DeepLabV2-R101 (configs/bdl_synthia.py) with the project's robust recipe
# for the later stages (configs/_base_/recipes/robust_ssl.py): not the release's; configs/bdl_synthia.py is the release.
#   python tools/train.py configs/bdl_synthia_robust.py --cfg-options load_from=checkpoints/deeplab_init_bdl.pth
_base_ = ['./bdl_synthia.py', './_base_/recipes/robust_ssl.py']
train_cfg = _base_.robust_train_cfg
# the SSL stages at a fifth of the flagship's M learning rate (docs/fidelity.md, R5)
train_cfg.stages.ssl_adaptation = dict(optim_wrapper=dict(segmentor=dict(optimizer=dict(
    lr=_base_.optim_wrapper.segmentor.optimizer.lr * _base_.robust_ssl_lr_factor))))
model = _base_.robust_model
