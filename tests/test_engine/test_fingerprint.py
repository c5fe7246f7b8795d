"""Never mix two runs (issue 13, item 5): a run refuses to continue with a config whose stage settings or data roots
changed since it started, lists the changed keys, and continues only with --force-resume."""
import copy
import json
import os.path as osp
import types

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from toy_helpers import load_tool, write_bdl_config

from bdl_mm.engine.fingerprint import (
    ConfigChangedError,
    check_config_unchanged,
    config_fingerprint,
    record_fingerprint,
)
from bdl_mm.engine.stage_configs import StageConfigBuilder
from bdl_mm.structures.plan import build_plan


@pytest.fixture(scope='module')
def setup(tmp_path_factory, toy_root):
    root = tmp_path_factory.mktemp('fingerprint')
    config = write_bdl_config(root / 'cfg.py', toy_root)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(root / 'work')
    return config, cfg


def fingerprint_of(cfg):
    """The fingerprint the loop records for ``cfg`` (its plan, F's config as the stage config builder derives it)."""
    plan = build_plan(cfg.train_cfg)
    return config_fingerprint(cfg, plan, StageConfigBuilder(cfg, plan, cfg.work_dir))


def fingerprint_with(cfg, options):
    """The fingerprint of ``cfg`` with ``options`` merged in."""
    changed = copy.deepcopy(cfg)
    changed.merge_from_dict(options)
    return fingerprint_of(changed)


def test_changed_stage_settings_and_data_roots_are_refused_and_listed(setup, tmp_path):
    _, cfg = setup
    work = str(tmp_path)
    started = fingerprint_of(cfg)
    assert check_config_unchanged(work, started) is None  # nothing recorded yet
    record_fingerprint(work, started)
    assert check_config_unchanged(work, started) == []
    changed = fingerprint_with(cfg, {'train_cfg.stages.adaptation.train_cfg.max_iters': 7,
                                      'train_dataloader.dataset.target.data_root': '/elsewhere/cityscapes/'})
    with pytest.raises(ConfigChangedError) as info:
        check_config_unchanged(work, changed)
    msg = str(info.value)
    assert '\n' not in msg and '2 key(s)' in msg and '--force-resume' in msg
    assert 'train_cfg.stages.adaptation.train_cfg.max_iters (2 -> 7)' in msg
    assert 'train_dataloader.dataset.target.data_root (' in msg and '-> "/elsewhere/cityscapes/")' in msg
    # F's config file is part of it: its settings are listed under translation.
    f_changed = fingerprint_with(cfg, {'train_cfg.stages.translation.cfg_options.train_cfg.max_epochs': 3})
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
    _, cfg = setup
    record_fingerprint(str(tmp_path), fingerprint_of(cfg))
    same = fingerprint_with(cfg, {'train_cfg.non_finite_loss': 'skip', 'train_cfg.check_data': 'full',
                                   'train_cfg.force_resume': True, 'train_cfg.sample_sheets': False,
                                   'train_cfg.verbose_console': True,
                                   'default_hooks.logger.interval': 7, 'log_level': 'DEBUG'})
    assert check_config_unchanged(str(tmp_path), same) == []


def test_resume_with_a_changed_config_stops_before_any_stage(setup, tmp_path):
    config, cfg = setup
    work = tmp_path / 'work'
    record_fingerprint(str(work), fingerprint_of(cfg))
    changed = Config.fromfile(config)
    changed.merge_from_dict({'train_cfg.stages.source_only.train_cfg.max_iters': 5})
    changed.work_dir, changed.resume = str(work), True
    with pytest.raises(ConfigChangedError, match=r'train_cfg\.stages\.source_only\.train_cfg\.max_iters \(2 -> 5\)'):
        Runner.from_cfg(changed).train()
    assert not osp.exists(work / 'm0') and not osp.exists(work / 'init_weights.pth')


def test_train_flags_reach_the_loop_only(setup, tmp_path):
    config, _ = setup
    train = load_tool('train.py')
    args = types.SimpleNamespace(check_data='full', force_resume=True, verbose=False)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(tmp_path)
    train.apply_loop_options(cfg, args)
    assert cfg.train_cfg.check_data == 'full' and cfg.train_cfg.force_resume is True
    plain = Config(dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=2)))
    train.apply_loop_options(plain, args)  # a plain config keeps a train loop that takes no such arguments
    assert plain.train_cfg == dict(type='IterBasedTrainLoop', max_iters=2)
