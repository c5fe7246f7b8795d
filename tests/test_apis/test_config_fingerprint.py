"""Never mix two runs (issue 13, item 5): a run refuses to continue with a config whose stage settings or data roots
changed since it started, lists the changed keys, and continues only with --force-resume."""
import copy
import json
import os.path as osp
import types

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from toy_helpers import load_tool, make_converted_toy, write_bdl_config

from bdl_mm.apis.config_fingerprint import (
    ConfigChangedError,
    check_config_unchanged,
    config_fingerprint,
    record_fingerprint,
)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('fingerprint')
    toy = make_converted_toy(root / 'toy', num_source=6, num_target_train=4, num_target_val=2)
    config = write_bdl_config(root / 'cfg.py', toy)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(root / 'work')
    return config, cfg, Runner.from_cfg(cfg).build_train_loop(cfg.train_cfg)


def fingerprint_with(loop, options):
    """The fingerprint of the loop's config with ``options`` merged in (the runner's config and the loop's stage
    settings swapped meanwhile)."""
    from mmengine.config import ConfigDict
    runner = loop.runner
    original, stage_cfgs = runner.cfg, loop.stage_cfgs
    changed = copy.deepcopy(original)
    changed.merge_from_dict(options)
    runner.cfg = changed
    loop.stage_cfgs = {kind: ConfigDict(changed.train_cfg.stages.get(kind, {})) for kind in stage_cfgs}
    try:
        return config_fingerprint(loop)
    finally:
        runner.cfg, loop.stage_cfgs = original, stage_cfgs


def test_changed_stage_settings_and_data_roots_are_refused_and_listed(setup, tmp_path):
    _, _, loop = setup
    work = str(tmp_path)
    started = config_fingerprint(loop)
    assert check_config_unchanged(work, started) is None  # nothing recorded yet
    record_fingerprint(work, started)
    assert check_config_unchanged(work, started) == []
    changed = fingerprint_with(loop, {'train_cfg.stages.adaptation.train_cfg.max_iters': 7,
                                      'train_dataloader.dataset.target.data_root': '/elsewhere/cityscapes/'})
    with pytest.raises(ConfigChangedError) as info:
        check_config_unchanged(work, changed)
    msg = str(info.value)
    assert '\n' not in msg and '2 key(s)' in msg and '--force-resume' in msg
    assert 'train_cfg.stages.adaptation.train_cfg.max_iters (2 -> 7)' in msg
    assert 'train_dataloader.dataset.target.data_root (' in msg and '-> "/elsewhere/cityscapes/")' in msg
    # F's config file is part of it: its settings are listed under translation.
    f_changed = fingerprint_with(loop, {'train_cfg.stages.translation.cfg_options.train_cfg.max_epochs': 3})
    with pytest.raises(ConfigChangedError, match=r'2 key\(s\).* translation\.train_cfg\.max_epochs \(1 -> 3\)'):
        check_config_unchanged(work, f_changed)
    # --force-resume: continues, records the new fingerprint and the forced changes
    forced = check_config_unchanged(work, changed, force=True)
    assert len(forced) == 2
    record_fingerprint(work, changed, forced=forced)
    record = json.load(open(osp.join(work, 'bdl_config.json')))
    assert record['forced_changes'][0]['changes'] == forced and record['config'] == changed
    assert check_config_unchanged(work, changed) == []


def test_run_time_switches_and_logging_do_not_count(setup, tmp_path):
    _, _, loop = setup
    record_fingerprint(str(tmp_path), config_fingerprint(loop))
    same = fingerprint_with(loop, {'train_cfg.non_finite_loss': 'skip', 'train_cfg.check_data': 'full',
                                   'train_cfg.force_resume': True, 'train_cfg.sample_sheets': False,
                                   'train_cfg.verbose_console': True,
                                   'default_hooks.logger.interval': 7, 'log_level': 'DEBUG'})
    assert check_config_unchanged(str(tmp_path), same) == []


def test_resume_with_a_changed_config_stops_before_any_stage(setup, tmp_path):
    config, cfg, loop = setup
    work = tmp_path / 'work'
    record_fingerprint(str(work), config_fingerprint(loop))
    changed = Config.fromfile(config)
    changed.merge_from_dict({'train_cfg.stages.source_only.train_cfg.max_iters': 5})
    changed.work_dir, changed.resume = str(work), True
    with pytest.raises(ConfigChangedError, match=r'train_cfg\.stages\.source_only\.train_cfg\.max_iters \(2 -> 5\)'):
        Runner.from_cfg(changed).train()
    assert not osp.exists(work / 'm0') and not osp.exists(work / 'init_weights.pth')


def test_train_flags_reach_the_loop_only(setup, tmp_path):
    config, _, _ = setup
    train = load_tool('train.py')
    args = types.SimpleNamespace(check_data='full', force_resume=True, verbose=False)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(tmp_path)
    train.apply_loop_options(cfg, args)
    assert cfg.train_cfg.check_data == 'full' and cfg.train_cfg.force_resume is True
    plain = Config(dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=2)))
    train.apply_loop_options(plain, args)  # a plain config keeps a train loop that takes no such arguments
    assert plain.train_cfg == dict(type='IterBasedTrainLoop', max_iters=2)
