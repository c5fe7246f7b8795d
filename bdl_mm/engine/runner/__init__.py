# Copyright (c) bdl_mm contributors.
from .concise_runner import CONSOLE, CONSOLE_ONLY, FILE_ONLY, ConciseRunner, make_console_concise

__all__ = ['CONSOLE', 'CONSOLE_ONLY', 'FILE_ONLY', 'ConciseRunner', 'make_console_concise']
