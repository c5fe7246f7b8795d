# BDL model with DeepLabV3+-R101 (configs/_base_/models/deeplabv3plus_r101.py) as M, trained with the
# output-space discriminator D_M (configs/_base_/models/output_discriminator.py), Eq. 1 and Eq. 3 of the paper; the
# release's labels (source 0, target 1) and lambda_adv = 0.001 (its DeepLabV2 value).
_base_ = ['./deeplabv3plus_r101.py', './output_discriminator.py']
model = dict(
    _delete_=True,
    type='BDLSegmentor',
    segmentor=_base_.model,
    discriminator=_base_.discriminator,
    lambda_adv=0.001,
    lambda_ssl=1.0,
    adversarial=True,
    source_label=0,
    target_label=1)
# Distributed runs: M and D_M are wrapped separately (BDLSegmentor.train_step drives both optimisers).
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
# M's input normalisation is model.segmentor.data_preprocessor, written once: no top-level one for BDLSegmentor.
data_preprocessor = None
