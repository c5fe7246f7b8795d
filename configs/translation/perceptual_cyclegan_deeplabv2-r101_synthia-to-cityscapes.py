# F for SYNTHIA-RAND-CITYSCAPES -> Cityscapes (BDL Eq. 2), perceptual loss through DeepLabV2-R101 M(k-1)
# (19-way classifier as in the release; SYNTHIA labels fill 16 of them).
# Set M per round: --cfg-options model.segmentor.checkpoint=work_dirs/<M(k-1)>/iter_XXX.pth
_base_ = ['./perceptual_cyclegan_base.py']
train_dataloader = dict(dataset=dict(source=dict(data_root='data/synthia', img_dir='RGB', img_suffix='.png')))
