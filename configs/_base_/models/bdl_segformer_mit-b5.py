# BDL model with MMSeg's SegFormer-B5 (./segformer_mit-b5.py) as M, in the BDL wrapper (./bdl_segmentor.py: D_M, the
# release's labels and its DeepLabV2 lambda_adv = 0.001).
_base_ = ['./segformer_mit-b5.py', './bdl_segmentor.py']
model = dict(_base_.bdl_segmentor, _delete_=True, segmentor=_base_.model)
data_preprocessor = None  # M's own, in model.segmentor (./bdl_segmentor.py)
