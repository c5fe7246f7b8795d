# A new dataset pair by inheritance (docs/new_dataset_pair.md): GTA5 -> BDD100K with MMSeg's BDD100KDataset, which
# has Cityscapes' 19 classes. Only the target changes: its data root, image folders and size (BDD100K images are
# 1280x720; like the release's half-size Cityscapes, M runs at 1024x576). Everything else is configs/bdl_gta5.py.
_base_ = ['./bdl_gta5.py']
target_root = 'data/bdd100k/'
target_scale = (1024, 576)
target_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=target_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='LoadPseudoLabel'),
    dict(type='PackUDAInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=target_scale, keep_ratio=False, backend='pillow', interpolation='bicubic'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    dataset=dict(
        target=dict(
            _delete_=True,
            type='BDD100KDataset',
            data_root=target_root,
            data_prefix=dict(img_path='images/10k/train'),
            pipeline=target_pipeline)))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='BDD100KDataset',
        data_root=target_root,
        data_prefix=dict(img_path='images/10k/val', seg_map_path='labels/sem_seg/masks/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# F (and the translate stage) read M's folders: GTA5 <-> BDD100K train images, from train_dataloader.dataset above.
