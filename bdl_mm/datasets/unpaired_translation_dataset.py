# Copyright (c) bdl_mm contributors.
"""Unpaired source/target images for training the translation model F, read straight from the dataset roots."""
import os.path as osp
from typing import Optional, Sequence, Union

from mmagic.datasets import UnpairedImageDataset
from mmagic.registry import DATASETS
from mmengine.dataset import BaseDataset
from mmengine.fileio import get_file_backend
from mmengine.registry import DefaultScope

from .file_checks import name_file_errors


@DATASETS.register_module()
class UnpairedTranslationDataset(UnpairedImageDataset):
    """MMagic's unpaired image dataset, with each domain read from its own dataset root.

    MMagic's :class:`UnpairedImageDataset` expects ``trainA/`` and ``trainB/`` under one folder; this variant takes
    each domain as ``dict(data_root, img_dir, img_suffix)`` so GTA5/SYNTHIA and Cityscapes are read where their
    converters leave them (e.g. ``data/gta5/images/*.png``, ``data/synthia/RGB/*.png``,
    ``data/cityscapes/leftImg8bit/train/<city>/*_leftImg8bit.png``). Folders are scanned recursively.

    Sampling follows MMagic (and pytorch-CycleGAN's unaligned dataset): the length is the larger domain's; index
    ``i`` gives source image ``i % len(source)`` and, in training, a uniformly random target image (in test mode
    ``i % len(target)``). Each sample holds ``img_<domain>_path`` for the pipeline's ``LoadImageFromFile``. A sample
    whose file cannot be read fails in one line naming the file (not MMagic's ``'NoneType' object has no attribute
    'ndim'``).

    Unscoped transform types in ``pipeline`` are looked up in MMagic's registry.

    Args:
        source (dict): ``dict(data_root=..., img_dir='', img_suffix='.png')`` of the source domain.
        target (dict): the same for the target domain.
        pipeline (list[dict | callable]): data transforms.
        domain_a (str): name of the source domain (sample key ``img_<domain_a>``). Defaults to 'source'.
        domain_b (str): name of the target domain. Defaults to 'target'.
        test_mode (bool): deterministic pairing. Defaults to False.
        io_backend (str, optional): file backend name; default: inferred from the source root.
    """

    def __init__(self,
                 source: dict,
                 target: dict,
                 pipeline: Sequence[Union[dict, callable]] = (),
                 domain_a: str = 'source',
                 domain_b: str = 'target',
                 test_mode: bool = False,
                 io_backend: Optional[str] = None):
        self.domain_cfgs = []
        for name, cfg in (('source', source), ('target', target)):
            unknown = set(cfg) - {'data_root', 'img_dir', 'img_suffix'}
            if 'data_root' not in cfg or unknown:
                raise ValueError(f'{name} must be dict(data_root=..., img_dir=..., img_suffix=...), got {cfg}')
            self.domain_cfgs.append(dict(data_root=str(cfg['data_root']), img_dir=cfg.get('img_dir', ''),
                                         img_suffix=cfg.get('img_suffix', '.png')))
        if io_backend is None:
            self.file_backend = get_file_backend(uri=self.domain_cfgs[0]['data_root'])
        else:
            self.file_backend = get_file_backend(backend_args={'backend': io_backend})
        self.test_mode = test_mode
        self.domain_a = domain_a
        self.domain_b = domain_b
        with DefaultScope.overwrite_default_scope('mmagic'):
            # Bypass UnpairedImageDataset.__init__ (it fixes the trainA/trainB layout); keep the rest of it.
            BaseDataset.__init__(self, pipeline=list(pipeline), test_mode=test_mode, serialize_data=False)
        name_file_errors(self, 'UnpairedTranslationDataset')  # a bad image fails naming the file, not in MMagic
        self.len_a = len(self.data_infos_a)
        self.len_b = len(self.data_infos_b)

    def load_data_list(self):
        """Scan both domains (sorted paths)."""
        self.data_infos_a = self._scan_domain(**self.domain_cfgs[0])
        self.data_infos_b = self._scan_domain(**self.domain_cfgs[1])
        return [self.data_infos_a, self.data_infos_b]

    def _scan_domain(self, data_root: str, img_dir: str, img_suffix: Union[str, tuple]) -> list:
        folder = osp.join(data_root, img_dir) if img_dir else data_root
        if not self.file_backend.isdir(folder):
            raise FileNotFoundError(f'UnpairedTranslationDataset: image folder {folder} does not exist')
        names = self.file_backend.list_dir_or_file(folder, list_dir=False, suffix=img_suffix, recursive=True)
        paths = sorted(self.file_backend.join_path(folder, n) for n in names)
        if not paths:
            raise FileNotFoundError(f'UnpairedTranslationDataset: no *{img_suffix} image under {folder}')
        return [dict(path=p) for p in paths]
