"""SYNTHIA-RAND-CITYSCAPES (Ros et al. 2016) as a source domain for SYNTHIA -> Cityscapes adaptation."""
from mmseg.registry import DATASETS

from .gta5 import GTA5Dataset


@DATASETS.register_module()
class SynthiaDataset(GTA5Dataset):
    """SYNTHIA-RAND-CITYSCAPES with labels converted to Cityscapes trainIds by
    ``tools/dataset_converters/synthia.py``.

    Layout: ``data_root/RGB/XXXXXXX.png`` and ``data_root/GT/LABELS/XXXXXXX_labelTrainIds.png``, split file
    ``train.txt``. All 19 Cityscapes classes are kept, as in the release, which evaluates SYNTHIA models on the
    19-class confusion and reports mIoU16 / mIoU13 (``UDAIoUMetric``). Checks and arguments as
    :class:`GTA5Dataset`.
    """
    CONVERTER = 'tools/dataset_converters/synthia.py'

    def __init__(self, data_prefix=dict(img_path='RGB', seg_map_path='GT/LABELS'), **kwargs) -> None:
        super().__init__(data_prefix=data_prefix, **kwargs)
