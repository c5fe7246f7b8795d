# Copyright (c) bdl_mm contributors.
from .concise_runner import CONSOLE, CONSOLE_ONLY, FILE_ONLY, ConciseRunner, make_console_concise
from .memo_config import MemoConfig, memo_config
from .stage_runner import StageRunner

__all__ = ['CONSOLE', 'CONSOLE_ONLY', 'FILE_ONLY', 'ConciseRunner', 'make_console_concise', 'MemoConfig', 'StageRunner',
           'memo_config']
