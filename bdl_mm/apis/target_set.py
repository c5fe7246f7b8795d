"""The target set M labels in the SSL step: which dataset of a config, built with a deterministic pipeline, and
each image's path relative to the set's image prefix (the pseudo label's name)."""
from typing import List, Optional, Sequence

from mmengine.dataset import BaseDataset, pseudo_collate
from torch.utils.data import DataLoader

from ..datasets.uda_dataset import pseudo_label_name

# transforms that make no sense when labelling the target: random augmentation and label loading
_DROP_FOR_INFERENCE = ('RandomFlip', 'RandomCrop', 'RandomResize', 'RandomRotate', 'RandomRotFlip', 'RandomCutOut',
                       'RandomMosaic', 'PhotoMetricDistortion', 'RandomChoiceResize', 'LoadAnnotations',
                       'LoadPseudoLabel')


def inference_pipeline(pipeline: Sequence[dict]) -> List[dict]:
    """A target training pipeline made deterministic: random augmentation and label loading dropped,
    ``PackUDAInputs`` replaced by ``PackSegInputs``."""
    out = []
    for t in pipeline:
        kind = str(t.get('type', '')).split('.')[-1]
        if kind in _DROP_FOR_INFERENCE:
            continue
        if kind == 'PackUDAInputs':
            t = dict(type='PackSegInputs')
        out.append(t)
    return out


def build_target_dataset(dataset_cfg) -> BaseDataset:
    """Build the target set from a dataset config (MMSeg registry), with :func:`inference_pipeline`."""
    from mmengine.config import ConfigDict
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = ConfigDict(dataset_cfg).copy() if isinstance(dataset_cfg, dict) else dataset_cfg
    if 'pipeline' in cfg:
        cfg['pipeline'] = inference_pipeline(cfg['pipeline'])
    return DATASETS.build(cfg)


def target_dataset_cfg(cfg) -> dict:
    """The target train set of a config: ``pseudo_label_dataset`` if present, else the ``target`` of a
    ``UDADataset`` train set, else the train set itself."""
    if cfg.get('pseudo_label_dataset') is not None:
        return cfg['pseudo_label_dataset']
    train = cfg.get('train_dataloader', {}).get('dataset')
    if train is None:
        raise KeyError('the config has neither pseudo_label_dataset nor train_dataloader.dataset')
    if str(train.get('type', '')).split('.')[-1] == 'UDADataset' or 'target' in train:
        return train['target']
    return train


def as_loader_parts(dataloader_or_dataset_cfg, batch_size, num_workers):
    """(dataset, batch_size, num_workers, collate_fn) from a DataLoader, a dataset, or a (dataloader) config."""
    obj = dataloader_or_dataset_cfg
    if isinstance(obj, DataLoader):
        return obj.dataset, batch_size or obj.batch_size or 1, obj.num_workers, obj.collate_fn
    if isinstance(obj, BaseDataset):
        return obj, batch_size or 1, num_workers, pseudo_collate
    if isinstance(obj, dict):
        if 'dataset' in obj and 'type' not in obj:  # a dataloader config
            dataset = obj['dataset']
            dataset = dataset if isinstance(dataset, BaseDataset) else build_target_dataset(dataset)
            return dataset, batch_size or obj.get('batch_size', 1), obj.get('num_workers', num_workers), pseudo_collate
        return build_target_dataset(obj), batch_size or 1, num_workers, pseudo_collate
    raise TypeError(f'expected a DataLoader, a dataset or a dataset config, got {type(obj).__name__}')


def relative_paths(dataset: BaseDataset) -> List[str]:
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    prefix = (getattr(dataset, 'data_prefix', None) or {}).get('img_path', '') or ''
    rels = []
    for i in range(len(dataset)):
        rels.append(pseudo_label_name(dataset.get_data_info(i)['img_path'], prefix))
    if len(set(rels)) != len(rels):
        raise ValueError('the target set holds two images with the same relative path; pseudo labels would collide')
    return rels


def dataset_num_classes(dataset) -> Optional[int]:
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    return None if classes is None else len(classes)
