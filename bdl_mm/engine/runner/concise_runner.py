# Copyright (c) bdl_mm contributors.
"""An mmengine Runner whose console shows only the lines meant for it; its log file keeps everything."""
import logging
import os
import os.path as osp
import sys
import sysconfig
import warnings

from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

# ``logger.info(msg, extra=CONSOLE)``: shown on a concise console and kept in the log file;
# ``extra=CONSOLE_ONLY``: shown on a concise console, not written to the log file (it repeats a file line);
# ``extra=FILE_ONLY``: written to the log file only, whatever the level.
CONSOLE = {'bdl_console': True}
CONSOLE_ONLY = {'bdl_console': 'only'}
FILE_ONLY = {'bdl_console': 'file'}

_STDLIB = osp.normcase(sysconfig.get_paths()['stdlib'])
_LOGGING_FILES = {osp.normcase(logging.__file__), osp.normcase(__file__)}


def is_third_party(path: str) -> bool:
    """A file of an installed package (OpenMMLab, torch ...) or of the standard library: not the project's."""
    path = osp.normcase(osp.abspath(path))
    parts = path.split(os.sep)
    return 'site-packages' in parts or 'dist-packages' in parts or path.startswith(_STDLIB + os.sep)


def _emitter_file() -> str:
    """The file whose code logged the record being filtered (past ``logging`` and mmengine's ``print_log``)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = osp.normcase(frame.f_code.co_filename)
        if name not in _LOGGING_FILES and not name.endswith(osp.join('mmengine', 'logging', 'logger.py')):
            return frame.f_code.co_filename
        frame = frame.f_back
    return ''


class ConsoleFilter(logging.Filter):
    """On a console handler, pass: the records marked ``extra=CONSOLE`` or ``CONSOLE_ONLY``, errors, and the
    warnings that the project's own code logs (those of the installed packages, e.g. mmengine's one line per frozen
    parameter, stay in the log file). On a file handler: drop the records marked ``CONSOLE_ONLY``."""

    def __init__(self, console: bool):
        super().__init__()
        self.console = console

    def filter(self, record: logging.LogRecord) -> bool:
        mark = getattr(record, 'bdl_console', None)
        if not self.console:
            return mark != 'only'
        if mark in (True, 'only'):
            return True
        if mark == 'file':
            return False
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and not is_third_party(_emitter_file())


def make_console_concise(logger: logging.Logger) -> logging.Logger:
    """Add :class:`ConsoleFilter` to the console and file handlers of an ``MMLogger`` (idempotent)."""
    for handler in logger.handlers:
        if any(isinstance(f, ConsoleFilter) for f in handler.filters):
            continue
        if isinstance(handler, logging.FileHandler):
            handler.addFilter(ConsoleFilter(console=False))
        elif isinstance(handler, logging.StreamHandler):
            handler.addFilter(ConsoleFilter(console=True))
    return logger


def log_python_warning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` of a concise run: a Python warning goes to the current runner's log file, and to
    the console only if the project's own code raised it."""
    text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
    MMLogger.get_current_instance().warning(text, extra=FILE_ONLY if is_third_party(filename) else CONSOLE)


@RUNNERS.register_module()
class ConciseRunner(Runner):
    """``mmengine.runner.Runner`` with a concise console.

    The environment, the config, the hook list, mmengine's ``Iter(train)`` lines, the other INFO records and the
    warnings of the installed packages (in their log form and as Python warnings) go only to the run's log file
    (``<work_dir>/<timestamp>/<timestamp>.log``). The console shows errors, the project's own warnings and the
    records logged with ``extra=CONSOLE`` or ``extra=CONSOLE_ONLY``: the ``[BDL]`` lines of
    :class:`~bdl_mm.engine.loops.BidirectionalLoop` and :class:`~bdl_mm.engine.hooks.StageProgressHook`.
    ``tools/train.py --verbose`` (``train_cfg.verbose_console=True``) builds plain ``Runner`` objects instead.
    """

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        logger = make_console_concise(super().build_logger(log_level=log_level, log_file=log_file, **kwargs))
        warnings.showwarning = log_python_warning
        return logger
