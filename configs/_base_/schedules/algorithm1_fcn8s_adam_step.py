# Algorithm 1 (./algorithm1.py) with the VGG16-FCN8s schedule of M (./fcn8s_adam_step.py): every M stage uses its
# optimisers and its loops, the release's early stops (80k iterations without pseudo labels, 120k with).
_base_ = ['./fcn8s_adam_step.py', './algorithm1.py']
train_cfg = dict(
    _base_.algorithm1,
    _delete_=True,
    stages=dict(
        _base_.algorithm1.stages,
        source_only=dict(train_cfg=_base_.train_cfg),
        adaptation=dict(train_cfg=_base_.train_cfg),
        ssl_adaptation=dict(train_cfg=_base_.train_cfg_ssl)))
