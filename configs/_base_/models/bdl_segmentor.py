# The BDL wrapper (BDLSegmentor) around a segmentation model M: M trained with the output-space discriminator D_M
# (./output_discriminator.py), Eq. 1 and Eq. 3 of the paper; the release's labels (source 0, target 1) and its
# DeepLabV2-R101 lambda_adv = 0.001. The target pseudo-label CE (weight lambda_ssl) is added whenever the target
# samples carry pseudo labels (UDADataset(pseudo_label_dir=...)). Whether M trains with D_M at all (Table 1's
# ablation) is the Algorithm-1 loop's train_cfg.adversarial, the one switch: the model sets none.
#
# Each bdl_<M>.py beside this file wraps its M in two lines (mmengine refuses two bases that both define `model`,
# hence the wrapper's own variable):
#   model = dict(_base_.bdl_segmentor, _delete_=True, segmentor=_base_.model)
#   data_preprocessor = None
# The second clears the top-level preprocessor MMEngine's Runner would pass to BDLSegmentor: M's input normalisation
# is written once, in model.segmentor.data_preprocessor, so a config replacing the segmentor states it nowhere else.
# `bdl_segmentor` is read only when the bases are merged: experiment configs change the wrapper through `model`, e.g.
#   model = dict(segmentor=dict(decode_head=dict(num_classes=16)), discriminator=dict(in_channels=16))
_base_ = ['./output_discriminator.py']
bdl_segmentor = dict(
    type='BDLSegmentor',
    segmentor=None,  # M: set by the bdl_<M>.py that wraps it
    discriminator=_base_.discriminator,
    lambda_adv=0.001,
    lambda_ssl=1.0,
    source_label=0,
    target_label=1)
# Distributed runs: M and D_M are wrapped separately (BDLSegmentor.train_step drives both optimisers).
model_wrapper_cfg = dict(
    type='MMSeparateDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
