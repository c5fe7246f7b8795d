"""bdl_mm: Bidirectional Learning (BDL, CVPR 2019) for unsupervised domain adaptation in OpenMMLab 1.x.

Importing the package registers every module into the registries of mmengine, MMSegmentation and MMagic:
configs load it with ``custom_imports = dict(imports=['bdl_mm'], allow_failed_imports=False)``.
"""
from .utils import allow_mmengine_checkpoints, check_dependencies
from .version import __version__

check_dependencies()
allow_mmengine_checkpoints()

from . import apis, datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__all__ = ['__version__']
