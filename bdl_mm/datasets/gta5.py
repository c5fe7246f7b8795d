"""GTA5 (Richter et al. 2016) as a source domain for GTA5 -> Cityscapes adaptation."""
import copy

from mmseg.datasets import BaseSegDataset, CityscapesDataset
from mmseg.registry import DATASETS

from .file_checks import check_data_list, check_dataset_paths, name_file_errors


@DATASETS.register_module()
class GTA5Dataset(BaseSegDataset):
    """GTA5 with labels converted to Cityscapes trainIds by ``tools/dataset_converters/gta5.py``.

    Layout: ``data_root/images/XXXXX.png`` and ``data_root/labels/XXXXX_labelTrainIds.png``, split file
    ``train.txt`` (optional: without ``ann_file`` every image under ``images/`` is used). Classes and palette are
    Cityscapes'. The data list is checked when it is loaded: missing root, split file, image folder or label fail in
    one line naming the path; ``verify_files=True`` also reads every header (unreadable PNG, size mismatch). A sample
    that fails to load mid-run (a file changed after the checks) fails in one line naming the file.

    Args:
        verify_files (bool): Read the header of every image and label at initialisation. Defaults to False.
        **kwargs: As :class:`mmseg.datasets.BaseSegDataset`.
    """
    METAINFO = copy.deepcopy(CityscapesDataset.METAINFO)
    CONVERTER = 'tools/dataset_converters/gta5.py'

    def __init__(self,
                 img_suffix='.png',
                 seg_map_suffix='_labelTrainIds.png',
                 data_prefix=dict(img_path='images', seg_map_path='labels'),
                 verify_files=False,
                 **kwargs) -> None:
        self.verify_files = verify_files
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, data_prefix=data_prefix, **kwargs)
        name_file_errors(self)  # a sample whose file cannot be read fails in one line naming the file

    def load_data_list(self):
        """Load the pairs like MMSeg, after checking the paths, and check every pair has its label."""
        name = type(self).__name__
        check_dataset_paths(name, self.data_root, self.ann_file, self.data_prefix.get('img_path'))
        data_list = super().load_data_list()
        check_data_list(name, data_list, require_labels=self.data_prefix.get('seg_map_path') is not None,
                        verify_files=self.verify_files, converter=self.CONVERTER)
        return data_list
