# BDL model for VGG16-FCN8s: M (./fcn8s_vgg16.py) in the BDL wrapper (./bdl_segmentor.py: D_M, lambda_ssl, labels)
# with the paper's lambda_adv = 1e-4 for FCN-8s (the release has no VGG settings: its defaults are DeepLab's 0.001).
_base_ = ['./fcn8s_vgg16.py', './bdl_segmentor.py']
model = dict(_base_.bdl_segmentor, _delete_=True, segmentor=_base_.model, lambda_adv=1e-4)
data_preprocessor = None  # M's own, in model.segmentor (./bdl_segmentor.py)
