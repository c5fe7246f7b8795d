"""The dataset of the forward direction (Eq. 1, 3): one labelled source and one unlabelled target sample per item."""
import copy
import os.path as osp
from fractions import Fraction
from typing import Optional, Union

import numpy as np
import torch
from mmengine.dist import get_rank
from mmseg.registry import DATASETS

from .file_checks import check_data_list
from .label_maps import LabelFileError, check_readable


def pseudo_label_name(img_path: str, img_prefix: str) -> str:
    """Where a target image's pseudo label lives inside a pseudo-label folder: the image's path relative to the
    dataset's image prefix, with a ``.png`` extension (labels are PNG whatever the image format)."""
    rel = osp.relpath(img_path, img_prefix) if img_prefix else osp.basename(img_path)
    if rel.startswith('..'):
        rel = osp.basename(img_path)
    return osp.splitext(rel)[0] + '.png'


def copy_counts(share: float, key: str = 'UDADataset: untranslated_share') -> tuple:
    """How often :class:`UDADataset` lists the translated source and its second copy so that a shuffled sampler
    draws the second copy with probability ``share``: ``(a, b)``, ``share = b / (a + b)`` with ``a + b <= 10``
    (0.5 -> (1, 1), 1 -> (0, 1), 2/3 -> (1, 2)). Raises ValueError naming ``key`` outside (0, 1] or off that grid."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError(f'{key} must be a number in (0, 1], got {share!r}')
    frac = Fraction(share).limit_denominator(10)
    if abs(float(frac) - share) > 1e-9:
        raise ValueError(f'{key} must be a fraction with a denominator of at most 10, got {share!r} (nearest {frac})')
    return frac.denominator - frac.numerator, frac.numerator


@DATASETS.register_module()
class UDADataset:
    """Pairs a source dataset (images + labels) with a target dataset (images, optional pseudo labels).

    Item ``i`` is ``dict(source=<source[i] through its pipeline>, target=<a target sample through its pipeline>)``,
    each the usual packed ``dict(inputs=Tensor, data_samples=SegDataSample)``; ``pseudo_collate`` batches it as
    ``dict(source=dict(inputs=[...], data_samples=[...]), target=dict(...))``. The length is the source length, so
    the outer sampler (``InfiniteSampler(shuffle=True)``) shuffles the source.

    Independent target order: the target sample does not depend on ``i``. Each process that reads data (the main
    process, or each dataloader worker) walks through its own stream of random permutations of the target set,
    seeded by ``(seed, rank, worker id)``: every target image is seen once per ``len(target)`` draws of a stream,
    as with a separately shuffled target loader (the release), and the sequence is reproducible for a given seed,
    number of workers and world size.

    Pseudo labels (SSL, Sec. 3.2): with ``pseudo_label_dir``, target image ``<img_path prefix>/<rel path>`` gets
    ``results['pseudo_label_path'] = <pseudo_label_dir>/<rel path>`` (and ``pseudo_weight_path`` =
    ``<... without .png>_conf.png`` where that file exists); ``LoadPseudoLabel`` in the target pipeline loads them
    (255 = ignored). All pseudo labels must exist; this is checked at initialisation.

    Source images may be a translated copy (``source.data_prefix.img_path`` = the translated folder): same names,
    labels from the original folder. With ``untranslated_source`` (the source before translation, not in the
    release: ``train_cfg.ssl_untranslated_source``) the set holds both copies: items ``0 .. n-1`` read the
    translated images, items ``n .. 2n-1`` the untranslated ones, with the same labels, so the shuffled sampler
    draws each with probability 1/2 and an epoch sees every source sample twice. ``untranslated_share`` sets another
    probability p of drawing the second copy (``train_cfg.ssl_second_source_share``): p = b / (a + b) in lowest
    terms (denominator at most 10), the set lists the translated images a times, then the second copy b times;
    p = 1 reads the second copy alone.

    Args:
        source (dict | Dataset): Source dataset (config), e.g. ``GTA5Dataset`` with a pipeline that loads labels.
        target (dict | Dataset): Target dataset (config), e.g. MMSeg's ``CityscapesDataset`` on ``train``, with a
            pipeline without ``LoadAnnotations`` but with ``LoadPseudoLabel`` after ``Resize``.
        pseudo_label_dir (str, optional): Pseudo-label folder (see ``docs/design.md``). Defaults to None.
        untranslated_source (dict | Dataset, optional): The source before translation (same images' names, labels
            and length as ``source``): a second copy of the source, after the first. Defaults to None.
        untranslated_share (float): The probability of drawing a source sample from ``untranslated_source``,
            in (0, 1]. Defaults to 0.5 (each copy once).
        seed (int, optional): Seed of the target order. None draws one from NumPy's global generator, which the
            runner seeds (``randomness.seed``). Defaults to None.
        lazy_init (bool): Defer loading the data lists and checks to :meth:`full_init`. Defaults to False.
    """

    def __init__(self,
                 source: Union[dict, object],
                 target: Union[dict, object],
                 pseudo_label_dir: Optional[str] = None,
                 untranslated_source: Union[dict, object, None] = None,
                 untranslated_share: float = 0.5,
                 seed: Optional[int] = None,
                 lazy_init: bool = False) -> None:
        self.copies = copy_counts(untranslated_share)
        self.source = DATASETS.build(source) if isinstance(source, dict) else source
        self.untranslated_source = (DATASETS.build(untranslated_source) if isinstance(untranslated_source, dict)
                                    else untranslated_source)
        self.target = DATASETS.build(target) if isinstance(target, dict) else target
        self.pseudo_label_dir = pseudo_label_dir
        self.seed = int(np.random.randint(2**31)) if seed is None else int(seed)
        self.rank = get_rank()
        self._stream_owner = None
        self._stream = []
        self._pseudo_paths = None
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        """The source's meta information (classes and palette; the target's are the same)."""
        return copy.deepcopy(self.source.metainfo)

    def full_init(self) -> None:
        """Load both data lists and check them (classes, labels of the source, pseudo labels)."""
        if self._fully_initialized:
            return
        self.source.full_init()
        self.target.full_init()
        src_classes = self.source.metainfo.get('classes')
        tgt_classes = self.target.metainfo.get('classes')
        if src_classes is not None and tgt_classes is not None and tuple(src_classes) != tuple(tgt_classes):
            raise ValueError(f'UDADataset: source classes {src_classes} differ from target classes {tgt_classes}')
        source_list = [self.source.get_data_info(i) for i in range(len(self.source))]
        check_data_list(f'UDADataset source ({type(self.source).__name__})', source_list, require_labels=True)
        if self.untranslated_source is not None:
            self.untranslated_source.full_init()
            copy_list = [self.untranslated_source.get_data_info(i) for i in range(len(self.untranslated_source))]
            check_data_list('UDADataset untranslated source', copy_list, require_labels=True)
            if [osp.basename(i['img_path']) for i in copy_list] != [osp.basename(i['img_path']) for i in source_list]:
                raise ValueError(f'UDADataset: untranslated_source ({len(copy_list)} images) must list the same '
                                 f'images as source ({len(source_list)}), in the same order')
        target_list = [self.target.get_data_info(i) for i in range(len(self.target))]
        check_data_list(f'UDADataset target ({type(self.target).__name__})', target_list, require_labels=False)
        self._fully_initialized = True
        self.set_pseudo_label_dir(self.pseudo_label_dir)

    def set_pseudo_label_dir(self, pseudo_label_dir: Optional[str]) -> None:
        """Use (and check) another pseudo-label folder, or none. Dataloader workers that already exist keep the
        old one: rebuild the dataloader (or use ``persistent_workers=False``) after changing it."""
        self.pseudo_label_dir = pseudo_label_dir
        self._pseudo_paths = None
        if pseudo_label_dir is None or not self._fully_initialized:
            return
        if not osp.isdir(pseudo_label_dir):
            raise FileNotFoundError(f'UDADataset: pseudo-label folder {pseudo_label_dir} does not exist')
        img_prefix = self.target.data_prefix['img_path']
        paths = []
        for i in range(len(self.target)):
            img_path = self.target.get_data_info(i)['img_path']
            label = osp.join(pseudo_label_dir, pseudo_label_name(img_path, img_prefix))
            if not osp.isfile(label):
                raise FileNotFoundError(f'UDADataset: pseudo label {label} of target image {img_path} does not exist')
            weight = osp.splitext(label)[0] + '_conf.png'
            paths.append((label, weight if osp.isfile(weight) else None))
        self._pseudo_paths = paths

    def __len__(self) -> int:
        return len(self.source) * (1 if self.untranslated_source is None else sum(self.copies))

    def target_index(self) -> int:
        """Next index of this process's target stream (see the class docstring)."""
        info = torch.utils.data.get_worker_info()
        worker = -1 if info is None else info.id
        if self._stream_owner != worker:
            self._stream_owner = worker
            self._rng = np.random.default_rng([self.seed, self.rank, worker + 1])
            self._stream = []
        if not self._stream:
            self._stream = self._rng.permutation(len(self.target)).tolist()[::-1]
        return self._stream.pop()

    def get_target_info(self, index: int) -> dict:
        """Data info of target sample ``index`` with its pseudo-label paths set (if any)."""
        info = self.target.get_data_info(index)
        if self._pseudo_paths is not None:
            label, weight = self._pseudo_paths[index]
            info['pseudo_label_path'] = label
            if weight is not None:
                info['pseudo_weight_path'] = weight
        return info

    @staticmethod
    def _run_pipeline(name, dataset, info):
        try:
            data = dataset.pipeline(info)
        except Exception as e:  # noqa: BLE001 - re-raised in one line naming the file of the sample
            keys = ('img_path', 'seg_map_path', 'pseudo_label_path', 'pseudo_weight_path')
            files = [info[k] for k in keys if info.get(k)]
            for path in files:  # an unreadable or missing file is the usual cause: name it
                try:
                    check_readable(path)
                except LabelFileError as err:
                    raise LabelFileError(f'UDADataset {name}: {err}') from e
            first_line = str(e).splitlines()[0] if str(e) else ''
            raise RuntimeError(f'UDADataset {name} sample {", ".join(files)}: {type(e).__name__}: {first_line}') from e
        if data is None:
            raise ValueError(f'UDADataset {name} pipeline returned None for {info.get("img_path")}')
        return data

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        n = len(self.source)
        if self.untranslated_source is not None and idx // n >= self.copies[0]:
            source = self._run_pipeline('untranslated source', self.untranslated_source,
                                        self.untranslated_source.get_data_info(idx % n))
        else:
            source = self._run_pipeline('source', self.source, self.source.get_data_info(idx % n))
        target = self._run_pipeline('target', self.target, self.get_target_info(self.target_index()))
        return dict(source=source, target=target)
