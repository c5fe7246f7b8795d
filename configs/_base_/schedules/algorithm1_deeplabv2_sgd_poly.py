# Algorithm 1 (./algorithm1.py) with the DeepLabV2-R101 schedule of M (./deeplabv2_sgd_poly.py): every M stage uses
# its optimisers and its loops, the release's early stops (80k iterations without pseudo labels, 120k with).
_base_ = ['./deeplabv2_sgd_poly.py', './algorithm1.py']
train_cfg = dict(
    _base_.algorithm1,
    _delete_=True,
    stages=dict(
        _base_.algorithm1.stages,
        source_only=dict(train_cfg=_base_.train_cfg),
        adaptation=dict(train_cfg=_base_.train_cfg),
        ssl_adaptation=dict(train_cfg=_base_.train_cfg_ssl)))
