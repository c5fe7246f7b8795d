"""tools/model_converters: release keys -> bdl_mm keys, strict loading, identical logits, loud failures."""
import copy
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS

import bdl_mm  # noqa: F401  (registers the modules)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def build_cfg(cfg):
    """Build under the mmseg scope, as a config with `default_scope = 'mmseg'` does."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg)


def load_tool(name):
    path = osp.join(ROOT, 'tools', 'model_converters', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'model_converter_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bdl_release = load_tool('bdl_release')
deeplab_init = load_tool('deeplab_resnet101_init')


def build(kind):
    """Tiny models with the full-size configs' layout."""
    if kind == 'deeplab':
        cfg = copy.deepcopy(Config.fromfile(osp.join(ROOT, 'configs/_base_/models/deeplabv2_r101.py')).model)
        cfg.backbone.update(depth=50, stem_channels=8, base_channels=4)
        cfg.decode_head.update(in_channels=128, num_classes=3)
    elif kind == 'fcn8s':
        cfg = copy.deepcopy(Config.fromfile(osp.join(ROOT, 'configs/_base_/models/fcn8s_vgg16.py')).model)
        cfg.backbone.update(base_channels=2, fc_channels=8)
        cfg.decode_head.update(in_channels=(3, 8, 16, 8), num_classes=3)
    else:
        cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/output_discriminator.py')).discriminator
        cfg.update(in_channels=3, base_channels=4)
    return build_cfg(cfg).eval()


def to_release(key):
    """Inverse of the converters' mapping, written independently: bdl_mm key -> release key."""
    if key.startswith('decode_head.conv2d_list.'):
        return 'layer5.' + key[len('decode_head.'):]
    for prefix in ('backbone.', 'decode_head.'):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key  # discriminator keys are the release's


def release_checkpoint(model, path, prefix=''):
    """A file shaped like the release's: its key names, random values, BN state without num_batches_tracked."""
    torch.manual_seed(1)
    sd = {}
    for key, value in model.state_dict().items():
        if key.endswith('num_batches_tracked'):
            continue
        value = torch.rand_like(value) + 0.5 if key.endswith('running_var') else torch.randn_like(value) * 0.1
        sd[prefix + to_release(key)] = value
    torch.save(sd, path)
    return sd


def logits(model, kind):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 33, 47) if kind != 'discriminator' else torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        return model._forward(x) if kind != 'discriminator' else model(x)


@pytest.mark.parametrize('kind', ['deeplab', 'fcn8s', 'discriminator'])
def test_release_round_trip(kind, tmp_path):
    reference = build(kind)
    src, dst = tmp_path / 'release.pth', tmp_path / 'out' / 'converted.pth'
    sd = release_checkpoint(reference, src)
    assert bdl_release.detect_model(sd) == kind
    bdl_release.main([str(src), str(dst)])
    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'} and ckpt['meta']['model'] == kind
    assert not [f for f in os.listdir(dst.parent) if f.endswith('.tmp')]  # atomic write left nothing behind
    # the reference model gets the same values through the inverse mapping
    reference.load_state_dict({k: sd[to_release(k)] for k in reference.state_dict()
                               if not k.endswith('num_batches_tracked')}, strict=False)
    model = build(kind)
    result = model.load_state_dict(ckpt['state_dict'], strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model = build(kind)
    load_checkpoint(model, str(dst), strict=True)
    if kind == 'deeplab':  # the release's BN state had no num_batches_tracked: added as 0
        assert torch.equal(model.backbone.bn1.num_batches_tracked, torch.tensor(0))
    out = logits(model, kind)
    assert out.abs().sum() > 0
    assert torch.equal(out, logits(reference, kind))


def test_deeplab_init_round_trip_and_drop_classifier(tmp_path):
    reference = build('deeplab')
    src = tmp_path / 'init.pth'
    sd = release_checkpoint(reference, src, prefix='Scale.')
    assert 'Scale.layer1.0.downsample.1.running_var' in sd and 'Scale.layer5.conv2d_list.3.bias' in sd
    dst = tmp_path / 'init_mm.pth'
    deeplab_init.main([str(src), str(dst)])
    model = build('deeplab')
    load_checkpoint(model, str(dst), strict=True)
    reference.load_state_dict({k: sd['Scale.' + to_release(k)] for k in reference.state_dict()
                               if not k.endswith('num_batches_tracked')}, strict=False)
    assert torch.equal(logits(model, 'deeplab'), logits(reference, 'deeplab'))

    dropped = deeplab_init.convert(sd, drop_classifier=True)
    result = build('deeplab').load_state_dict(dropped, strict=False)
    assert sorted(result.missing_keys) == sorted(f'decode_head.conv2d_list.{i}.{p}' for i in range(4)
                                                 for p in ('weight', 'bias'))
    assert not result.unexpected_keys


def test_deeplab_init_for_a_bdl_config_in_one_command(tmp_path):
    """configs/README.md's command for the bdl_* configs: --drop-classifier --prefix segmentor. gives the keys of a
    BDLSegmentor's M (the documented two-step path through bdl_release.py stopped on the converted keys)."""
    reference = build('deeplab')
    src, dst = tmp_path / 'init.pth', tmp_path / 'deeplab_init_bdl.pth'
    sd = release_checkpoint(reference, src, prefix='Scale.')
    deeplab_init.main([str(src), str(dst), '--drop-classifier', '--prefix', 'segmentor.'])
    out = torch.load(dst, map_location='cpu')
    assert out['meta']['prefix'] == 'segmentor.'
    expected = {'segmentor.' + k for k in reference.state_dict() if not k.startswith('decode_head.')}
    assert set(out['state_dict']) == expected
    key = 'segmentor.backbone.layer1.0.conv1.weight'
    assert torch.equal(out['state_dict'][key], sd['Scale.layer1.0.conv1.weight'])


def test_unknown_keys_fail_naming_the_key(tmp_path):
    sd = {k: torch.zeros(1) for k in ('conv1.weight', 'layer1.0.conv1.weight', 'layer5.conv2d_list.0.weight')}
    with pytest.raises(KeyError, match='layer4.0.se.fc.weight'):
        bdl_release.convert({**sd, 'layer4.0.se.fc.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match='upscore16.weight'):
        bdl_release.convert({'conv1_1.weight': torch.zeros(1), 'upscore16.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match='Scale.fc.weight'):
        deeplab_init.convert({'Scale.conv1.weight': torch.zeros(1), 'Scale.fc.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match="'conv1.weight'.*Scale"):
        deeplab_init.convert({'conv1.weight': torch.zeros(1)})
    src, dst = tmp_path / 'bad.pth', tmp_path / 'bad_mm.pth'
    torch.save({**sd, 'module.conv1.weight': torch.zeros(1)}, src)
    with pytest.raises(SystemExit, match="error: unknown key 'module.conv1.weight'"):
        bdl_release.main([str(src), str(dst)])
    torch.save({'Scale.conv1.weight': torch.zeros(1), 'Scale.layer6.weight': torch.zeros(1)}, src)
    with pytest.raises(SystemExit, match="error: unknown key 'Scale.layer6.weight'"):
        deeplab_init.main([str(src), str(dst)])
    assert not dst.exists() and os.listdir(tmp_path) == ['bad.pth']


def test_prefix_and_cli(tmp_path):
    disc = build('discriminator')
    src, dst = tmp_path / 'model_D.pth', tmp_path / 'd.pth'
    release_checkpoint(disc, src)
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools/model_converters/bdl_release.py'), str(src),
                           str(dst), '--prefix', 'discriminator.'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert '(discriminator, 10 keys)' in proc.stdout
    keys = sorted(torch.load(dst, weights_only=True)['state_dict'])
    assert keys == sorted(f'discriminator.{n}.{p}' for n in ('conv1', 'conv2', 'conv3', 'conv4', 'classifier')
                          for p in ('weight', 'bias'))
