"""Toy data in the real on-disk formats, converted by the real converters, shared by the dataset tests."""
import pytest
from toy_helpers import make_converted_toy


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory):
    """Small toy pair (6 source, 4 target train, 2 target val), converted; read-only for the tests."""
    return make_converted_toy(tmp_path_factory.mktemp('toy'), num_source=6, num_target_train=4, num_target_val=2)


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Pipelines resolve transform names in MMSeg's scope, as configs do with ``default_scope = 'mmseg'``."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
