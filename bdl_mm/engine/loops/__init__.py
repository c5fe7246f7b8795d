# Copyright (c) bdl_mm contributors.
from .bidirectional_loop import BidirectionalLoop

__all__ = ['BidirectionalLoop']
