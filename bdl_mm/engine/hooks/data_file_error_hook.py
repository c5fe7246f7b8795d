"""Makes the runner's datasets name the file of a sample that fails to load."""
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from bdl_mm.datasets.file_checks import name_file_errors


@HOOKS.register_module()
class DataFileErrorHook(Hook):
    """Wrap the pipelines of the train and val datasets in :class:`~bdl_mm.datasets.file_checks.NamedFileErrors`.

    A file corrupted or replaced after the preflight scan then fails in one line naming it (``CityscapesDataset:
    cannot read .../x_gtFine_labelTrainIds.png (UnidentifiedImageError: ...)``) instead of deep inside MMCV, in the
    main process or a dataloader worker (workers start after ``before_run``). bdl_mm's own datasets
    (``GTA5Dataset``, ``SynthiaDataset``, ``UDADataset``, ``UnpairedTranslationDataset``) name their files
    without this hook; it covers MMSeg's and MMagic's datasets (e.g. the Cityscapes val set).
    :class:`BidirectionalLoop` adds it to every stage.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        for attr in ('_train_loop', '_val_loop', '_test_loop'):
            loop = getattr(runner, attr, None)
            dataloader = getattr(loop, 'dataloader', None)
            dataset = getattr(dataloader, 'dataset', None)
            if dataset is not None:
                name_file_errors(dataset)
