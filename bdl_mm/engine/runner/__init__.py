# Copyright (c) bdl_mm contributors.
from .concise_runner import CONSOLE, CONSOLE_ONLY, FILE_ONLY, ConciseRunner, make_console_concise
from .memo_config import MemoConfig, memo_config

__all__ = ['CONSOLE', 'CONSOLE_ONLY', 'FILE_ONLY', 'ConciseRunner', 'make_console_concise', 'MemoConfig',
           'memo_config']
