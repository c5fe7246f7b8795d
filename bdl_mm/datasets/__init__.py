from . import transforms  # noqa: F401
from .gta5 import GTA5Dataset
from .synthia import SynthiaDataset
from .uda_dataset import UDADataset
from .unpaired_translation_dataset import UnpairedTranslationDataset

__all__ = ['GTA5Dataset', 'SynthiaDataset', 'UDADataset', 'UnpairedTranslationDataset']
