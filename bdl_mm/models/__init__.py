from . import backbones, decode_heads, discriminators, segmentors, translators  # noqa: F401
