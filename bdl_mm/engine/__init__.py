from . import hooks, loops, runner  # noqa: F401
