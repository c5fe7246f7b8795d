# Copyright (c) bdl_mm contributors.
"""An mmengine Runner whose console shows only the lines meant for it; its log file keeps everything."""
import contextlib
import io
import logging
import os
import os.path as osp
import sys
import sysconfig
import warnings

from mmengine.logging import MMLogger
from mmseg.registry import RUNNERS

from .stage_runner import StageRunner

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


_WARNINGS_TO_FILE = [0]


@contextlib.contextmanager
def warnings_to_log_file():
    """Inside this block the project's warnings go to the log file only: a config check that builds a model it
    will not run (F without M's checkpoint) would otherwise warn on the console about that throw-away model."""
    _WARNINGS_TO_FILE[0] += 1
    try:
        yield
    finally:
        _WARNINGS_TO_FILE[0] -= 1


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
        if _WARNINGS_TO_FILE[0]:
            return False
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


# warnings of installed packages raised while the tools imported the stack (tools/_bootstrap.py), written to the
# first concise run's log file
_DEFERRED_WARNINGS: list = []


def defer_import_warnings(records) -> None:
    """Show the project's own warnings among ``records`` (``warnings.catch_warnings(record=True)``) now, and keep the
    installed packages' for the log file of the next :class:`ConciseRunner`."""
    for w in records:
        if is_third_party(w.filename):
            _DEFERRED_WARNINGS.append(w)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


@contextlib.contextmanager
def prints_to_log_file(logger: logging.Logger):
    """mmengine prints some lines with ``print`` (``Loads checkpoint by local backend ...``, ``Did not find
    last_checkpoint to be resumed.``): inside this block they go to the log file only."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for line in buf.getvalue().splitlines():
            if line.strip():
                logger.info(line, extra=FILE_ONLY)


def log_python_warning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` of a concise run: a Python warning goes to the current runner's log file, and to
    the console only if the project's own code raised it."""
    text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
    MMLogger.get_current_instance().warning(text, extra=FILE_ONLY if is_third_party(filename) else CONSOLE)


@RUNNERS.register_module()
class ConciseRunner(StageRunner):
    """``mmengine.runner.Runner`` with a concise console.

    The environment, the config, the hook list, mmengine's ``Iter(train)`` lines, the other INFO records and the
    warnings of the installed packages (in their log form and as Python warnings) go only to the run's log file
    (``<work_dir>/<timestamp>/<timestamp>.log``). The console shows errors, the project's own warnings and the
    records logged with ``extra=CONSOLE`` or ``extra=CONSOLE_ONLY``: the ``[BDL]`` lines of
    :class:`~bdl_mm.engine.loops.BidirectionalLoop` and :class:`~bdl_mm.engine.hooks.StageProgressHook`.
    ``tools/train.py --verbose`` (``train_cfg.verbose_console=True``) builds :class:`StageRunner` objects
    (mmengine's console) instead.
    """

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        logger = make_console_concise(super().build_logger(log_level=log_level, log_file=log_file, **kwargs))
        warnings.showwarning = log_python_warning
        while _DEFERRED_WARNINGS:
            w = _DEFERRED_WARNINGS.pop(0)
            log_python_warning(w.message, w.category, w.filename, w.lineno)
        return logger

    def load_or_resume(self) -> None:
        with prints_to_log_file(self.logger):
            super().load_or_resume()

    def load_checkpoint(self, *args, **kwargs):
        with prints_to_log_file(self.logger):
            return super().load_checkpoint(*args, **kwargs)
