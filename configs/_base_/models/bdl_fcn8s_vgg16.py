# BDL model for VGG16-FCN8s: M (configs/_base_/models/fcn8s_vgg16.py) trained with the output-space
# discriminator D_M, Eq. 1 and Eq. 3; lambda_adv = 1e-4 for VGG16 (release), labels source 0 / target 1.
_base_ = ['./fcn8s_vgg16.py', './output_discriminator.py']
model = dict(
    _delete_=True,
    type='BDLSegmentor',
    segmentor=_base_.model,
    discriminator=_base_.discriminator,
    lambda_adv=1e-4,
    lambda_ssl=1.0,
    adversarial=True,
    source_label=0,
    target_label=1)
# M's input normalisation is written once, in model.segmentor.data_preprocessor: the top-level one MMEngine's Runner
# would pass to BDLSegmentor is cleared, so that a config replacing the segmentor needs to state it nowhere else.
data_preprocessor = None
# Distributed runs: M and D_M are wrapped separately (BDLSegmentor.train_step drives both optimisers).
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
