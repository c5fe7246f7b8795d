# GTA5 -> Cityscapes adaptation data (forward direction of BDL, Eq. 3): one GTA5 sample (image + label) and one
# Cityscapes train sample (image, optional pseudo labels) per iteration, batch 1 as in the release.
# The InfiniteSampler shuffles the source; UDADataset draws the target from its own seeded permutations.
# Translated source (S' = F(S)): train_dataloader.dataset.source.data_prefix.img_path = <translated folder>.
# SSL rounds: train_dataloader.dataset.pseudo_label_dir = <pseudo-label folder>.
_base_ = ['./gta5.py']
train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='UDADataset',
        source=_base_.source_train,
        target=_base_.target_train,
        pseudo_label_dir=None))
