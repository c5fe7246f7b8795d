# Algorithm 1 on the toy data (configs/bdl_toy.py) with the project's robust recipe for the later stages
# (configs/_base_/recipes/robust_ssl.py); configs/bdl_toy.py is the release's recipe. The reference tracks (colour
# transfer, FDA) run the same recipe. The shift study compares the two:
#   python tools/shift_study.py --config configs/bdl_toy_robust.py --families toy colour --seeds 0 1 2 --jobs 2 --threads 1
_base_ = ['./bdl_toy.py', './_base_/recipes/robust_ssl.py']
train_cfg = _base_.robust_train_cfg
# the SSL stages at a fifth of the flagship's M learning rate (docs/fidelity.md, R5)
train_cfg.stages.ssl_adaptation = dict(optim_wrapper=dict(segmentor=dict(optimizer=dict(
    lr=_base_.optim_wrapper.segmentor.optimizer.lr * _base_.robust_ssl_lr_factor))))
model = _base_.robust_model
