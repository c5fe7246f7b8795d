# BDL model for DeepLabV2-R101: M (configs/_base_/models/deeplabv2_r101.py) trained with the output-space
# discriminator D_M (configs/_base_/models/output_discriminator.py), Eq. 1 and Eq. 3 of the paper; release
# labels (source 0, target 1) and lambda_adv = 0.001. The target pseudo-label CE (weight lambda_ssl) is added
# whenever the target samples carry pseudo labels (UDADataset(pseudo_label_dir=...)).
# Experiment configs override parts with e.g.
#   model = dict(segmentor=dict(decode_head=dict(num_classes=16)), discriminator=dict(in_channels=16))
_base_ = ['./deeplabv2_r101.py', './output_discriminator.py']
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
# M's input normalisation is written once, in model.segmentor.data_preprocessor: the top-level one MMEngine's Runner
# would pass to BDLSegmentor is cleared, so that a config replacing the segmentor needs to state it nowhere else.
data_preprocessor = None
# Distributed runs: M and D_M are wrapped separately (BDLSegmentor.train_step drives both optimisers).
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
