"""Each stage's child config (bdl_mm.engine.stage_configs.StageConfigBuilder), derived from the outer BDL config
without a runner: the M stages' data, D_M switch and load_from, F's config and its ablation, the baselines, the
oracle's data set, and the one switch for adversarial training. Nothing is built or trained (fast)."""
import copy
import inspect
import os.path as osp
from types import SimpleNamespace

import pytest
from mmengine.config import Config
from toy_helpers import ROOT

from bdl_mm.engine.loops import BidirectionalLoop
from bdl_mm.engine.stage_configs import (
    StageConfigBuilder,
    check_model_switches,
    image_folder,
    resolve_config_path,
    train_iters,
)
from bdl_mm.models.segmentors import BDLSegmentor
from bdl_mm.structures.plan import INITIAL, build_plan, describe, format_plan

TOY = osp.join(ROOT, 'configs', 'bdl_toy.py')


@pytest.fixture(scope='module')
def toy_cfg():
    return Config.fromfile(TOY)


def builder(cfg, work_dir='/w/run', adversarial=True, **train_cfg):
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict({f'train_cfg.{k}': v for k, v in train_cfg.items()})
    return StageConfigBuilder(cfg, build_plan(cfg.train_cfg), work_dir, adversarial=adversarial)


def test_m_stage_data_hooks_and_run(toy_cfg):
    configs = builder(toy_cfg)
    stage = configs.plan.get('k1/m1')
    cfg = configs.m_stage_cfg(stage, translated_dir='/x/translated', pseudo_label_dir='/x/ssl', load_from='/x/m.pth')
    source = cfg.train_dataloader.dataset.source
    assert source.data_prefix.img_path == '/x/translated'  # S'(k) ...
    assert source.data_prefix.seg_map_path == toy_cfg.train_dataloader.dataset.source.data_prefix.seg_map_path
    assert cfg.train_dataloader.dataset.pseudo_label_dir == '/x/ssl'
    assert cfg.load_from == '/x/m.pth' and cfg.work_dir == '/w/run/k1/m1' and cfg.experiment_name == 'run_k1_m1'
    assert cfg.custom_hooks[-1] == dict(type='StageMetricsHook') and 'train_cfg' in cfg
    assert cfg.train_cfg == toy_cfg.train_cfg.stages.ssl_adaptation.train_cfg
    # M(0): the labelled source alone, without D_M
    m0 = configs.m_stage_cfg(configs.plan.get('m0'))
    assert m0.train_dataloader.dataset == toy_cfg.train_dataloader.dataset.source and m0.model.adversarial is False
    assert m0.load_from is None
    plain = configs.m_stage_cfg(configs.plan.get('k1/m0'))
    assert plain.train_dataloader.dataset.source.data_prefix == toy_cfg.train_dataloader.dataset.source.data_prefix
    assert plain.train_dataloader.dataset.pseudo_label_dir is None and plain.model.adversarial is True
    assert toy_cfg.train_dataloader.dataset.source.data_prefix.img_path != '/x/translated'  # the outer: untouched


def test_ssl_untranslated_source_reaches_ssl_stages_only(toy_cfg):
    release = builder(toy_cfg)
    off = release.m_stage_cfg(release.plan.get('k1/m1'), translated_dir='/x/t', pseudo_label_dir='/x/s')
    assert 'untranslated_source' not in off.train_dataloader.dataset  # the release: S' alone
    configs = builder(toy_cfg, ssl_untranslated_source=True)
    outer_source = toy_cfg.train_dataloader.dataset.source
    for name in ('k1/m1', 'k2/m2', 'ref/reinhard/k1/m1'):
        dataset = configs.m_stage_cfg(configs.plan.get(name), translated_dir='/x/t', pseudo_label_dir='/x/s')
        dataset = dataset.train_dataloader.dataset
        assert dataset.source.data_prefix.img_path == '/x/t'
        assert dataset.untranslated_source == outer_source  # S itself: its images and labels
    m0 = configs.m_stage_cfg(configs.plan.get('k1/m0'), translated_dir='/x/t')  # M_0(k): S' alone, as the release
    assert 'untranslated_source' not in m0.train_dataloader.dataset
    assert describe(configs.plan, configs.plan.get('k1/m1')) == "M_1(1) on S'(1) + S + T + pseudo labels"
    assert 'ssl_untranslated_source=True' in format_plan(configs.plan).splitlines()[0]


def test_ssl_baseline_source_reaches_ssl_stages_only(toy_cfg):
    """Row 21: every track's SSL stages read S' and the run's one copy B(S) (same names and labels as S)."""
    configs = builder(toy_cfg, ssl_baseline_source=dict(type='Reinhard'))
    outer_source = toy_cfg.train_dataloader.dataset.source
    for name in ('k1/m1', 'k2/m2', 'ref/fda/k1/m1'):
        dataset = configs.m_stage_cfg(configs.plan.get(name), translated_dir='/x/t', pseudo_label_dir='/x/s')
        dataset = dataset.train_dataloader.dataset
        assert dataset.source.data_prefix.img_path == '/x/t'
        second = dataset.untranslated_source
        assert second.data_prefix == dict(outer_source.data_prefix, img_path='/w/run/ssl_baseline_source')
        assert {k: v for k, v in second.items() if k != 'data_prefix'} == {
            k: v for k, v in outer_source.items() if k != 'data_prefix'}
    m0 = configs.m_stage_cfg(configs.plan.get('k1/m0'), translated_dir='/x/t')  # M_0(k): S' alone, as the release
    assert 'untranslated_source' not in m0.train_dataloader.dataset
    assert describe(configs.plan, configs.plan.get('k1/m1')) == "M_1(1) on S'(1) + Reinhard(S) + T + pseudo labels"
    assert 'ssl_baseline_source=Reinhard' in format_plan(configs.plan).splitlines()[0]


def test_ssl_second_source_share_reaches_the_ssl_stages_datasets(toy_cfg):
    """``ssl_second_source_share``: the SSL stages' UDADataset draws the second copy that often (1: B(S) alone); at
    the default 1/2 their configs carry no share (a run of before replays its stage configs unchanged)."""
    half = builder(toy_cfg, ssl_baseline_source=dict(type='Reinhard'))
    dataset = half.m_stage_cfg(half.plan.get('k1/m1'), translated_dir='/x/t', pseudo_label_dir='/x/s')
    assert 'untranslated_share' not in dataset.train_dataloader.dataset
    configs = builder(toy_cfg, ssl_baseline_source=dict(type='Reinhard'), ssl_second_source_share=1)
    for name in ('k1/m1', 'k2/m2', 'ref/fda/k1/m1'):
        dataset = configs.m_stage_cfg(configs.plan.get(name), translated_dir='/x/t', pseudo_label_dir='/x/s')
        assert dataset.train_dataloader.dataset.untranslated_share == 1
        assert dataset.train_dataloader.dataset.untranslated_source.data_prefix.img_path == '/w/run/ssl_baseline_source'
    m0 = configs.m_stage_cfg(configs.plan.get('k1/m0'), translated_dir='/x/t')  # M_0(k): S' alone, as the release
    assert 'untranslated_share' not in m0.train_dataloader.dataset
    assert describe(configs.plan, configs.plan.get('k1/m1')) == 'M_1(1) on Reinhard(S) + T + pseudo labels'
    assert 'ssl_second_source_share=1' in format_plan(configs.plan).splitlines()[0]
    third = builder(toy_cfg, ssl_untranslated_source=True, ssl_second_source_share=1 / 3)
    assert describe(third.plan, third.plan.get('k1/m1')) == "M_1(1) on S'(1) + S (33% S) + T + pseudo labels"


def test_second_source_all_stages_reaches_m0_of_every_track(toy_cfg):
    """Row 22: with ``second_source_all_stages`` M_0(k) of every track (no pseudo labels) trains on S'(k) and the
    SSL stages' second copy too, drawn as they draw it; M(0) and the oracle stay on their own data."""
    off = builder(toy_cfg, ssl_baseline_source=dict(type='Reinhard'))
    release_m0 = off.m_stage_cfg(off.plan.get('k1/m0'), translated_dir='/x/t')
    assert 'untranslated_source' not in release_m0.train_dataloader.dataset
    configs = builder(toy_cfg, ssl_baseline_source=dict(type='Reinhard'), second_source_all_stages=True,
                      ssl_second_source_share=2 / 3)
    for name in ('k1/m0', 'k2/m0', 'ref/fda/k1/m0', 'k1/m1'):
        dataset = configs.m_stage_cfg(configs.plan.get(name), translated_dir='/x/t').train_dataloader.dataset
        assert dataset.source.data_prefix.img_path == '/x/t', name
        assert dataset.untranslated_source.data_prefix.img_path == '/w/run/ssl_baseline_source', name
        assert dataset.untranslated_share == 2 / 3, name
    for name in ('m0', 'ref/oracle'):
        assert 'untranslated_source' not in configs.m_stage_cfg(configs.plan.get(name)).train_dataloader.dataset
    assert describe(configs.plan, configs.plan.get('k1/m0')) == "M_0(1) on S'(1) + Reinhard(S) (67% Reinhard(S)) + T"
    assert describe(configs.plan, configs.plan.get('ref/fda/k1/m0')).startswith("fda: M_0(1) on S'(1) + Reinhard(S)")
    assert 'second_source_all_stages=True' in format_plan(configs.plan).splitlines()[0]
    assert 'second_source_all_stages' not in format_plan(off.plan).splitlines()[0]


@pytest.mark.parametrize('m_init, expected', [
    ('source_only', {'k1/m0': 'm0', 'k1/m1': 'm0', 'k1/m2': 'm0', 'ref/oracle': 'm0'}),
    ('initial', {'k1/m0': INITIAL, 'k1/m2': INITIAL, 'ref/oracle': INITIAL}),
    ('previous', {'k1/m0': 'm0', 'k1/m1': 'k1/m0', 'k2/m0': 'k1/m2', 'ref/fda/k1/m0': 'm0'}),
])
def test_load_from_choices(toy_cfg, m_init, expected):
    """Where each M starts (the plan) reaches its config's load_from (the loop passes that stage's checkpoint)."""
    configs = builder(toy_cfg, m_init=m_init)
    for name, start in expected.items():
        stage = configs.plan.get(name)
        assert stage.start_from == start, name
        checkpoint = f'/w/run/{start}/final_model.pth'
        assert configs.m_stage_cfg(stage, load_from=checkpoint).load_from == checkpoint


def test_adversarial_switch(toy_cfg):
    configs = builder(toy_cfg, adversarial=False)
    assert all(configs.m_stage_cfg(configs.plan.get(n)).model.adversarial is False for n in ('m0', 'k1/m0', 'k1/m1'))
    with_d = builder(toy_cfg)
    assert [with_d.m_stage_cfg(with_d.plan.get(n)).model.adversarial for n in ('m0', 'k1/m0', 'k1/m1', 'ref/oracle')] \
        == [False, True, True, False]
    # the outer model keeps BDLSegmentor's default: D_M is built, as before the switch moved to train_cfg
    assert inspect.signature(BDLSegmentor).parameters['adversarial'].default is True


def test_model_adversarial_is_refused_in_one_line(toy_cfg, tmp_path):
    cfg = copy.deepcopy(toy_cfg)
    cfg.model.adversarial = False
    with pytest.raises(ValueError, match=r'^model\.adversarial: set train_cfg\.adversarial instead') as info:
        check_model_switches(cfg)
    assert '\n' not in str(info.value)
    runner = SimpleNamespace(cfg=cfg, work_dir=str(tmp_path))  # the loop refuses it before building anything
    with pytest.raises(ValueError, match=r'^model\.adversarial: set train_cfg\.adversarial'):
        BidirectionalLoop(runner, None, **{k: v for k, v in cfg.train_cfg.items() if k != 'type'})
    check_model_switches(toy_cfg)  # the shipped configs set none


def test_class_mix_with_a_source_smaller_than_the_target_is_refused(toy_cfg):
    from bdl_mm.engine.stage_configs import pipeline_size
    cfg = copy.deepcopy(toy_cfg)
    cfg.model.class_mix = True
    check_model_switches(cfg)  # the toy's source 256x144 holds a 256x128 target crop
    source = cfg.train_dataloader.dataset.source.pipeline
    assert pipeline_size(source) == (256, 144) and pipeline_size(cfg.train_dataloader.dataset.target.pipeline) == (
        256, 128)
    resize = next(t for t in source if t['type'] == 'Resize')
    resize['scale'] = (256, 120)
    with pytest.raises(ValueError, match=r'source images are 256x120 and the target images 256x128') as info:
        check_model_switches(cfg)
    assert '\n' not in str(info.value)
    assert pipeline_size(source + [dict(type='RandomCrop', crop_size=(100, 300))]) == (256, 100)
    resize['keep_ratio'] = True  # a size the config does not fix: left to the step's own check
    check_model_switches(cfg)


def test_translation_cfg_and_perceptual_ablation(toy_cfg):
    configs = builder(toy_cfg)
    f = configs.translation_cfg(configs.plan.get('k2/translation'), '/w/run/k1/m2/segmentor.pth')
    assert f.model.segmentor.checkpoint == '/w/run/k1/m2/segmentor.pth'
    assert f.model.segmentor.config == toy_cfg.model.segmentor  # F's perceptual loss runs this config's M
    assert f.model.seg_input is not None and f.work_dir == '/w/run/k2/translation' and 'load_from' not in f
    assert f.train_cfg.max_epochs == toy_cfg.translation_cfg_options.train_cfg.max_epochs  # cfg_options applied
    data = f.train_dataloader.dataset
    assert osp.normpath(osp.join(data.source.data_root, data.source.img_dir)) == 'data/toy/gta5/images'
    plain = builder(toy_cfg, perceptual=False)
    f = plain.translation_cfg(plain.plan.get('k1/translation'), '/x/m.pth')
    assert f.model.perceptual_loss is None and f.model.segmentor is None
    assert plain.plan.get('k1/translation').what == 'F(1), plain CycleGAN'
    assert train_iters(Config(dict(train_cfg=dict(max_iters=7)))) == 7


def test_no_translation_ablation(toy_cfg):
    configs = builder(toy_cfg, use_translation=False, use_ssl=False, references=None)
    assert configs.plan.names == ['m0', 'k1/m0', 'k2/m0']
    assert configs.plan.get('k1/m0').translated is None and configs.plan.run_name == 'BDL'


def test_baselines_in_f_place(toy_cfg):
    configs = builder(toy_cfg)
    fda = configs.plan.get('ref/fda/k1/translation')
    assert configs.translation_key(fda) == 'train_cfg.references.fda.translation'
    assert configs.translation_baseline(fda) == dict(type='FDA', beta=0.01)
    f_cfg = configs.translation_cfg(fda, None)
    assert f_cfg.model == dict(type='FDA', beta=0.01) and f_cfg.work_dir == '/w/run/ref/fda/k1/translation'
    assert dict(f_cfg.train_dataloader.dataset.target) == configs.m_image_folders()['target']
    assert configs.translation_baseline(configs.plan.get('k1/translation')) is None  # the run's own F
    bad = builder(toy_cfg, references=dict(_delete_=True, x=dict(translation=dict(type='CycleGANish'))))
    with pytest.raises(ValueError, match=r"^train_cfg\.references\.x\.translation\.type: unknown translation type"):
        bad.translation_baseline(bad.plan.get('ref/x/k1/translation'))


def test_oracle_dataset_derivation(toy_cfg):
    configs = builder(toy_cfg)
    dataset = configs.oracle_dataset()
    assert dataset.type == toy_cfg.val_dataloader.dataset.type and dataset.data_root == 'data/toy/cityscapes/'
    assert dataset.data_prefix == dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train')
    assert [t['type'] for t in dataset.pipeline] == ['LoadImageFromFile', 'LoadAnnotations', 'Resize', 'PackSegInputs']
    oracle = configs.m_stage_cfg(configs.plan.get('ref/oracle'))
    assert oracle.train_dataloader.dataset == dataset and oracle.model.adversarial is False
    assert oracle.train_cfg == toy_cfg.train_cfg.stages.source_only.train_cfg  # trained like M(0)
    named = builder(toy_cfg, references=dict(oracle=dict(dataset=dict(type='X', data_root='/t'),
                                                          train_cfg=dict(max_iters=5))))
    assert named.oracle_dataset() == dict(type='X', data_root='/t')
    assert named.m_stage_cfg(named.plan.get('ref/oracle')).train_cfg.max_iters == 5
    no_val = copy.deepcopy(toy_cfg)
    no_val.val_dataloader = None
    with pytest.raises(ValueError, match=r'^train_cfg\.references\.oracle\.dataset: the oracle needs'):
        StageConfigBuilder(no_val, configs.plan, '/w').oracle_dataset()


def test_planned_units_without_data(toy_cfg):
    configs = builder(toy_cfg, work_dir='/nowhere')
    messages = []
    logger = SimpleNamespace(info=messages.append)
    assert configs.planned_units(configs.plan.get('k1/m1'), logger) == dict(units=400, unit='iter')
    assert configs.planned_units(configs.plan.get('k1/ssl1'), logger)['unit'] == 'image'
    missing = copy.deepcopy(toy_cfg)
    missing.merge_from_dict({'train_dataloader.dataset.source.data_root': '/nowhere/'})
    other = StageConfigBuilder(missing, configs.plan, '/w')
    assert other.planned_units(configs.plan.get('k1/translate'), logger) == dict(units=None, unit='image')
    assert any('planned work of k1/translate unknown' in m for m in messages)


def test_image_folders_and_config_paths(toy_cfg):
    target = image_folder(toy_cfg.train_dataloader.dataset.target)
    assert target == dict(data_root='data/toy/cityscapes/', img_dir='leftImg8bit/train', img_suffix='_leftImg8bit.png')
    assert resolve_config_path(toy_cfg.train_cfg.stages.translation.config, TOY).startswith(ROOT)
    with pytest.raises(FileNotFoundError, match=r'^train_cfg\.stages\.translation\.config: no such file: nowhere'):
        resolve_config_path('nowhere.py', TOY)


def test_structure_loss_reaches_f_from_the_command_line(toy_cfg):
    """``--cfg-options train_cfg.stages.translation.cfg_options.model.structure_loss.weight=1`` (the switch of ledger
    row 15) lands in F's config next to its perceptual loss, which it leaves as it is."""
    cfg = copy.deepcopy(toy_cfg)
    cfg.merge_from_dict({'train_cfg.stages.translation.cfg_options.model.structure_loss.weight': 1.})
    configs = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), '/w/run')
    f = configs.translation_cfg(configs.plan.get('k1/translation'), '/w/run/m0/segmentor.pth')
    assert f.model.structure_loss == dict(weight=1.)
    plain = builder(toy_cfg).translation_cfg(configs.plan.get('k1/translation'), '/w/run/m0/segmentor.pth')
    assert 'structure_loss' not in plain.model and f.model.perceptual_loss == plain.model.perceptual_loss


def test_robust_ssl_stages_train_at_a_fifth_of_the_lr():
    """configs/bdl_toy_robust.py (ledger rows R4, R5): every M trained with pseudo labels, M_0(k >= 2) included, gets
    a fifth of M's learning rate (5e-3 -> 1e-3), D_M keeps its own; M(0), M_0(1) and the oracle keep M's; the
    reference tracks run the same recipe."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'bdl_toy_robust.py'))
    configs = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), '/w/run')
    lr = {name: configs.m_stage_cfg(configs.plan.get(name)).optim_wrapper for name in (
        'm0', 'k1/m0', 'k1/m1', 'k1/m2', 'k2/m0', 'k2/m2', 'ref/oracle', 'ref/reinhard/k1/m0', 'ref/reinhard/k1/m1')}
    assert cfg.optim_wrapper.segmentor.optimizer.lr == 5e-3
    assert {n: w.segmentor.optimizer.lr for n, w in lr.items()} == {
        'm0': 5e-3, 'k1/m0': 5e-3, 'k1/m1': 1e-3, 'k1/m2': 1e-3, 'k2/m0': 1e-3, 'k2/m2': 1e-3, 'ref/oracle': 5e-3,
        'ref/reinhard/k1/m0': 5e-3, 'ref/reinhard/k1/m1': 1e-3}
    assert {w.discriminator.optimizer.lr for w in lr.values()} == {cfg.optim_wrapper.discriminator.optimizer.lr}
    assert configs.plan.get('k2/ssl0').kind == 'pseudo_label' and 'k1/ssl0' not in configs.plan.names


def test_ssl_lr_factor_scales_the_ssl_stages_lr_after_their_own_settings(toy_cfg):
    """``train_cfg.ssl_lr_factor`` multiplies whatever lr an SSL stage would train at, its own stage setting
    included; a config whose M optimiser names no lr is refused in one line."""
    cfg = copy.deepcopy(toy_cfg)
    cfg.merge_from_dict({'train_cfg.ssl_lr_factor': 0.5,
                         'train_cfg.stages.ssl_adaptation.optim_wrapper.segmentor.optimizer.lr': 4e-3})
    configs = StageConfigBuilder(cfg, build_plan(cfg.train_cfg), '/w/run')
    assert configs.ssl_lr_factor == 0.5
    assert configs.m_stage_cfg(configs.plan.get('k1/m1')).optim_wrapper.segmentor.optimizer.lr == 2e-3
    assert configs.m_stage_cfg(configs.plan.get('k1/m0')).optim_wrapper.segmentor.optimizer.lr == 5e-3
    assert builder(toy_cfg).ssl_lr_factor == 1.0
    for bad in (0, '0.2', True):
        with pytest.raises(ValueError, match=r'^train_cfg\.ssl_lr_factor must be a number > 0, got'):
            builder(toy_cfg, ssl_lr_factor=bad)
    del cfg.optim_wrapper.segmentor.optimizer['lr']
    cfg.train_cfg.stages.ssl_adaptation.pop('optim_wrapper')
    with pytest.raises(ValueError, match=r'^train_cfg\.ssl_lr_factor scales optim_wrapper\.segmentor\.optimizer\.lr'):
        StageConfigBuilder(cfg, build_plan(cfg.train_cfg), '/w/run').m_stage_cfg(configs.plan.get('k1/m1'))
