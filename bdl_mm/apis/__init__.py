# Copyright (c) bdl_mm contributors.
from .pseudo_label import generate_pseudo_labels, load_summary

__all__ = ['generate_pseudo_labels', 'load_summary']
