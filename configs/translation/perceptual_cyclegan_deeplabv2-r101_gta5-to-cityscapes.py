# F for GTA5 -> Cityscapes (BDL Eq. 2), perceptual loss through DeepLabV2-R101 M(k-1) (19 classes).
# Set M per round: --cfg-options model.segmentor.checkpoint=work_dirs/<M(k-1)>/iter_XXX.pth
_base_ = ['./perceptual_cyclegan_base.py']
train_dataloader = dict(dataset=dict(source=dict(data_root='data/gta5', img_dir='images', img_suffix='.png')))
