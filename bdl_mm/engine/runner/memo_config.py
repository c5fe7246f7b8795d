"""A ``Config`` whose ``pretty_text`` is formatted once per content.

mmengine formats the whole config with yapf each time it reads ``Config.pretty_text``: in the log at start-up, in
``config.py`` of the work dir, in the vis backends and in the ``meta`` of *every* checkpoint
(``Runner.save_checkpoint``). On the toy plan that formatting took over half of a stage's wall time. The text is a
pure function of the config's content and ``_format_python_code``, so it is kept per content: the files written
are the same, byte for byte. (mmengine has no such cache; this is written by hand.)
"""
from typing import Dict

from mmengine.config import Config

_TEXTS: Dict[tuple, str] = {}
_MAX_TEXTS = 256


class MemoConfig(Config):

    @property
    def pretty_text(self) -> str:
        key = (repr(self.to_dict()), self._format_python_code)
        text = _TEXTS.get(key)
        if text is None:
            if len(_TEXTS) >= _MAX_TEXTS:
                _TEXTS.clear()
            text = _TEXTS[key] = super().pretty_text
        return text


def memo_config(cfg: Config) -> MemoConfig:
    """A shallow copy of ``cfg`` as a :class:`MemoConfig` (same content, file name and text)."""
    if isinstance(cfg, MemoConfig):
        return cfg
    out = MemoConfig.__new__(MemoConfig)
    for key, value in cfg.__dict__.items():  # what Config.__copy__ does, into the subclass
        object.__setattr__(out, key, value)
    return out
