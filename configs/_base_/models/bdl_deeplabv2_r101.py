# BDL model for DeepLabV2-R101: M (./deeplabv2_r101.py) in the BDL wrapper (./bdl_segmentor.py: D_M, lambda_adv
# 0.001, lambda_ssl, labels).
_base_ = ['./deeplabv2_r101.py', './bdl_segmentor.py']
model = dict(_base_.bdl_segmentor, _delete_=True, segmentor=_base_.model)
data_preprocessor = None  # M's own, in model.segmentor (./bdl_segmentor.py)
