"""The dataset tests read the session's toy pair (``toy_root``, tests/conftest.py) in MMSeg's scope."""
import pytest


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Pipelines resolve transform names in MMSeg's scope, as configs do with ``default_scope = 'mmseg'``."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
