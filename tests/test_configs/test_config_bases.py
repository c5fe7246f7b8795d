# Copyright (c) bdl_mm contributors.
"""Each fact of the configs has one home, and the model zoo lists configs that exist.

- The Algorithm-1 loop settings live in ``configs/_base_/schedules/algorithm1.py`` only; each
  ``algorithm1_<schedule>.py`` adds M's loops from its schedule and nothing else.
- The BDL wrapper lives in ``configs/_base_/models/bdl_segmentor.py`` only; each ``bdl_<M>.py`` puts its M in it.
- ``train_cfg.adversarial`` is the one switch of D_M: no config sets ``model.adversarial``.
- ``configs/metafile.yaml`` and ``configs/README.md`` name the same configs with the same paper figures.

Configs are only loaded (no model is built, bdl_mm is not imported): fast.
"""
import glob
import os.path as osp
import re

import pytest
import yaml
from mmengine.config import Config

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = osp.join(ROOT, 'configs')
EXPERIMENTS = sorted(
    osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(p, CONFIGS).split(osp.sep))
SCHEDULES = {'algorithm1_deeplabv2_sgd_poly.py': 'deeplabv2_sgd_poly.py',
             'algorithm1_fcn8s_adam_step.py': 'fcn8s_adam_step.py'}
MODELS = {'bdl_deeplabv2_r101.py': ('deeplabv2_r101.py', 1e-3),
          'bdl_deeplabv3plus_r101.py': ('deeplabv3plus_r101.py', 1e-3),
          'bdl_fcn8s_vgg16.py': ('fcn8s_vgg16.py', 1e-4),
          'bdl_segformer_mit-b5.py': ('segformer_mit-b5.py', 1e-3)}


def load(*parts):
    return Config.fromfile(osp.join(CONFIGS, *parts), import_custom_modules=False)


def plain(cfg_dict):
    return cfg_dict.to_dict() if hasattr(cfg_dict, 'to_dict') else cfg_dict


def source_files():
    return glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)


def spelled_in(pattern):
    """Config files whose code (comments stripped) matches ``pattern``."""
    found = []
    for path in source_files():
        code = '\n'.join(line.split('#', 1)[0] for line in open(path).read().splitlines())
        if re.search(pattern, code):
            found.append(osp.relpath(path, CONFIGS))
    return sorted(found)


def test_loop_and_wrapper_types_are_spelled_once():
    assert spelled_in(r"type='BidirectionalLoop'") == ['_base_/schedules/algorithm1.py']
    assert spelled_in(r"type='BDLSegmentor'") == ['_base_/models/bdl_segmentor.py']
    assert spelled_in(r'\badversarial\s*=') == ['_base_/schedules/algorithm1.py']


@pytest.mark.parametrize('name', sorted(SCHEDULES))
def test_algorithm1_base_takes_m_loops_from_its_schedule(name):
    loop = plain(load('_base_', 'schedules', 'algorithm1.py').algorithm1)
    schedule = load('_base_', 'schedules', SCHEDULES[name])
    train_cfg = plain(load('_base_', 'schedules', name).train_cfg)
    stages = train_cfg.pop('stages')
    assert train_cfg == {k: v for k, v in loop.items() if k != 'stages'}
    assert stages['source_only']['train_cfg'] == plain(schedule.train_cfg)
    assert stages['adaptation']['train_cfg'] == plain(schedule.train_cfg)
    assert stages['ssl_adaptation']['train_cfg'] == plain(schedule.train_cfg_ssl)
    m_stages = ('source_only', 'adaptation', 'ssl_adaptation')
    assert {k: v for k, v in stages.items() if k not in m_stages} == {
        k: v for k, v in loop['stages'].items() if k not in m_stages}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_bdl_model_base_wraps_its_m(name):
    m_base, lambda_adv = MODELS[name]
    wrapper = plain(load('_base_', 'models', 'bdl_segmentor.py').bdl_segmentor)
    cfg = load('_base_', 'models', name)
    model = plain(cfg.model)
    assert model.pop('segmentor') == plain(load('_base_', 'models', m_base).model)
    assert model.pop('lambda_adv') == pytest.approx(lambda_adv)
    wrapper.pop('segmentor'), wrapper.pop('lambda_adv')
    assert model == wrapper and 'adversarial' not in model
    assert cfg.data_preprocessor is None  # M's own, in model.segmentor


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_no_config_sets_model_adversarial(name):
    cfg = load(name)
    model = cfg.get('model') or {}
    assert 'adversarial' not in model, f'{name}: set train_cfg.adversarial, not model.adversarial'
    if cfg.get('train_cfg', {}).get('type') == 'BidirectionalLoop':
        assert cfg.train_cfg.adversarial is True and model.type == 'BDLSegmentor'


def test_metafile_and_readme_list_the_same_configs():
    meta = yaml.safe_load(open(osp.join(CONFIGS, 'metafile.yaml')))
    assert [c['Name'] for c in meta['Collections']] == ['BDL']
    readme = open(osp.join(CONFIGS, 'README.md')).read()
    rows = {}
    for line in readme.splitlines():
        link = re.match(r'\| \[[^\]]+\]\(\./([^)]+)\) \|', line)
        if link:
            rows['configs/' + link.group(1)] = [cell.strip() for cell in line.strip('|').split('|')]
    for model in meta['Models']:
        assert model['In Collection'] == 'BDL' and 'Weights' not in model
        path = model['Config']
        assert osp.isfile(osp.join(ROOT, path)), path
        assert model['Name'] == osp.splitext(osp.basename(path))[0]
        assert model['Results']['Task'] == 'Semantic Segmentation' and model['Results']['Dataset'] == 'Cityscapes'
        (metric, value), = model['Results']['Metrics'].items()
        assert metric in ('mIoU', 'mIoU13', 'mIoU16')
        assert path in rows, f'{path} missing from configs/README.md'
        assert rows[path][4].startswith(str(value)), (path, rows[path][4], value)
        assert f'python tools/train.py {path}' in rows[path][5]
    for path, cells in rows.items():
        assert osp.isfile(osp.join(ROOT, path)), path
    # both source-specific FCN8s initial files are named, each with its own config
    assert 'fcn8s_vgg16_gta5_init.pth' in rows['configs/bdl_gta5_vgg16.py'][5]
    assert 'fcn8s_vgg16_synthia_init.pth' in rows['configs/bdl_synthia_vgg16.py'][5]


@pytest.mark.parametrize('flagship', ['bdl_gta5.py', 'bdl_synthia.py', 'bdl_toy.py'])
def test_robust_recipe_is_a_separate_config_on_top_of_its_flagship(flagship):
    """A robust config differs from its flagship only in the recipe's switches; the flagship keeps the release's."""
    from bdl_mm.engine.stage_configs import StageConfigBuilder
    from bdl_mm.structures.plan import build_plan
    release, robust = load(flagship), load(flagship.replace('.py', '_robust.py'))
    recipe = load('_base_', 'recipes', 'robust_ssl.py')
    assert release.train_cfg.m_init in ('initial', 'source_only') and not release.model.get('class_mix', False)
    assert robust.train_cfg.m_init == 'previous' and robust.model.class_mix is True
    structure = dict(weight=5., scale=1)  # F keeps the source's edges (ledger row R3)
    assert plain(recipe.robust_train_cfg) == dict(
        m_init='previous', ssl_from_previous_round=True,  # M_0(k >= 2) with pseudo labels (R4)
        ssl_lr_factor=0.2,  # the SSL stages at a fifth of M's learning rate (R5)
        ssl_baseline_source=dict(type='Reinhard'),  # the SSL stages on S' and Reinhard(S) (R6)
        stages=dict(translation=dict(cfg_options=dict(model=dict(structure_loss=structure)))))
    assert plain(recipe.robust_model) == dict(class_mix=True)
    assert plain(robust.train_cfg.stages.translation.cfg_options.model.structure_loss) == structure
    assert 'structure_loss' not in (release.train_cfg.stages.translation.cfg_options.get('model') or {})
    assert robust.train_cfg.ssl_from_previous_round is True and not release.train_cfg.get('ssl_from_previous_round')
    assert robust.train_cfg.ssl_lr_factor == 0.2 and release.train_cfg.get('ssl_lr_factor', 1.0) == 1.0  # R5
    for cfg in (release, robust):  # everything else is the flagship's
        cfg.train_cfg.pop('m_init'), cfg.model.pop('class_mix', None), cfg.train_cfg.pop('ssl_from_previous_round', 0)
        cfg.train_cfg.pop('ssl_lr_factor', None), cfg.train_cfg.pop('ssl_baseline_source', None)
        f_opts = cfg.train_cfg.stages.translation.cfg_options
        f_opts.get('model', {}).pop('structure_loss', None)
        if f_opts.get('model') == {}:  # the real flagships' F options have no model key
            f_opts.pop('model')
        cfg.pop('robust_train_cfg', None), cfg.pop('robust_model', None)
    assert plain(robust.train_cfg) == plain(release.train_cfg) and plain(robust.model) == plain(release.model)
    assert plain(robust) == plain(release)
    # the plan: every M continues from the M before it
    robust = load(flagship.replace('.py', '_robust.py'))
    plan = build_plan(robust.train_cfg)
    assert plan.get('k1/m0').start_from == 'm0' and plan.get('k1/m1').start_from == 'k1/m0'
    assert plan.get('k2/m0').start_from == 'k1/m2' and plan.get('k2/m2').start_from == 'k2/m1'
    assert plan.get('k2/m0').kind == 'ssl_adaptation' and 'k2/ssl0' in plan.names  # R4: M_0(2) with pseudo labels
    assert plan.ssl_baseline_source == dict(type='Reinhard') and not release.train_cfg.get('ssl_baseline_source')
    # R5 on the flagship's own M learning rate: 5e-3 -> 1e-3 (toy), 2.5e-4 -> 5e-5 (real pairs)
    configs = StageConfigBuilder(robust, plan, '/w/run')
    m_lr = release.optim_wrapper.segmentor.optimizer.lr
    assert configs.m_stage_cfg(plan.get('k1/m1')).optim_wrapper.segmentor.optimizer.lr == pytest.approx(m_lr / 5)
    assert configs.m_stage_cfg(plan.get('k1/m0')).optim_wrapper.segmentor.optimizer.lr == pytest.approx(m_lr)
