# Algorithm 1 on the toy data (configs/bdl_toy.py) with the project's robust recipe for the later stages
# (configs/_base_/recipes/robust_ssl.py); configs/bdl_toy.py is the release's recipe. The reference tracks (colour
# transfer, FDA) run the same recipe. The shift study compares the two:
#   python tools/shift_study.py --config configs/bdl_toy_robust.py --families toy colour --seeds 0 1 2 --jobs 2 --threads 1
_base_ = ['./bdl_toy.py', './_base_/recipes/robust_ssl.py']
train_cfg = _base_.robust_train_cfg
model = _base_.robust_model
