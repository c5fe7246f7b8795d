# Copyright (c) bdl_mm contributors.
from .pseudo_label import generate_pseudo_labels, load_summary
from .translate import list_images, load_translator, translate_dataset

__all__ = ['generate_pseudo_labels', 'load_summary', 'list_images', 'load_translator', 'translate_dataset']
