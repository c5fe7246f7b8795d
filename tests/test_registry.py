"""Importing bdl_mm registers every module into the mmengine / MMSeg / MMagic registries."""
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

EXPECTED = {
    ('mmseg', 'MODELS'): ['DeepLabV2ResNet', 'DeepLabV2Head', 'VGG16FCN', 'FCN8sHead', 'OutputDiscriminator',
                          'BDLSegmentor'],
    ('mmseg', 'DATASETS'): ['GTA5Dataset', 'SynthiaDataset', 'UDADataset'],
    ('mmseg', 'TRANSFORMS'): ['LoadPseudoLabel', 'PackUDAInputs'],
    ('mmseg', 'METRICS'): ['UDAIoUMetric'],
    ('mmseg', 'HOOKS'): ['PseudoLabelHook', 'StageMetricsHook', 'NonFiniteLossHook', 'DataFileErrorHook'],
    ('mmseg', 'LOOPS'): ['BidirectionalLoop'],
    ('mmagic', 'MODELS'): ['PerceptualCycleGAN'],
    ('mmagic', 'DATASETS'): ['UnpairedTranslationDataset'],
}


def test_import_registers_every_module():
    # A fresh interpreter: registration must come from `import bdl_mm` alone.
    code = ('import importlib, json, bdl_mm\n'
            f'expected = {EXPECTED!r}\n'
            'found = {}\n'
            'for (scope, name), modules in expected.items():\n'
            '    registry = getattr(importlib.import_module(scope + ".registry"), name)\n'
            '    found[scope + "." + name] = sorted(m for m in modules if registry.get(m) is not None)\n'
            'print(json.dumps(found))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    import json
    found = json.loads(out.strip().splitlines()[-1])
    for (scope, name), modules in EXPECTED.items():
        assert found[f'{scope}.{name}'] == sorted(modules), f'{scope}.{name}'


def test_registered_classes_live_in_bdl_mm():
    from mmseg.registry import LOOPS, MODELS

    import bdl_mm  # noqa: F401
    assert MODELS.get('BDLSegmentor').__module__ == 'bdl_mm.models.segmentors.bdl_segmentor'
    assert LOOPS.get('BidirectionalLoop').__module__ == 'bdl_mm.engine.loops.bidirectional_loop'
    from mmseg.registry import HOOKS
    for name, module in (('NonFiniteLossHook', 'non_finite_loss_hook'), ('DataFileErrorHook', 'data_file_error_hook')):
        assert HOOKS.get(name).__module__ == f'bdl_mm.engine.hooks.{module}'


def test_missing_dependency_is_one_line(monkeypatch):
    from bdl_mm import utils
    monkeypatch.setitem(utils.REQUIRED, 'mmseg', ('9.9.9', 'mmsegmentation'))
    with pytest.raises(utils.DependencyError) as info:
        utils.check_dependencies()
    msg = str(info.value)
    assert '\n' not in msg
    assert 'mmsegmentation==9.9.9' in msg and 'tools/install.sh' in msg


def test_tool_reports_missing_dependency_without_traceback(tmp_path):
    # A fake `mmcv` that cannot be imported stands in for a broken install.
    fake = tmp_path / 'mmcv'
    fake.mkdir()
    (fake / '__init__.py').write_text('raise ImportError("undefined symbol: _ZN3c10")\n')
    env = {'PYTHONPATH': str(tmp_path), 'PATH': '/usr/bin:/bin'}
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools/train.py'), '-h'], capture_output=True, text=True,
                          env=env)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('error: bdl_mm needs mmcv==2.1.0') and 'tools/install.sh' in lines[0]


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tools_show_mmseg_flags(tool):
    proc = subprocess.run([sys.executable, osp.join(ROOT, f'tools/{tool}.py'), '-h'], capture_output=True, text=True,
                          check=True)
    for flag in ('--work-dir', '--cfg-options', '--launcher'):
        assert flag in proc.stdout
    if tool == 'train':
        assert '--resume' in proc.stdout and '--amp' in proc.stdout
