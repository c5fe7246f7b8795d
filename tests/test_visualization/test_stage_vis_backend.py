"""StageVisBackend: every stage of a BDL run in one TensorBoard run, tags prefixed with the stage; W&B defaults."""
import glob
import os.path as osp

from mmseg.registry import VISBACKENDS
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import bdl_mm  # noqa: F401  (registers StageVisBackend)
from bdl_mm.visualization import run_id


def stage_backend(save_dir, stage, backend):
    return VISBACKENDS.build(dict(type='StageVisBackend', save_dir=save_dir, stage=stage, backend=backend,
                                  run_name=run_id('/runs/bdl_toy')))


def test_stages_share_one_tensorboard_run_tagged_by_stage(tmp_path):
    run_dir = str(tmp_path / 'vis_data')
    for stage, losses in (('m0', [3.0, 2.5]), ('k1/m0', [2.0, 1.5, 1.25])):
        backend = stage_backend(run_dir, stage, dict(type='TensorboardVisBackend'))
        for step, loss in enumerate(losses, 1):
            backend.add_scalars({'loss': loss, 'lr': 0.01 / step}, step=step)
        backend.add_scalar('mIoU', 30.0 + len(losses), step=len(losses))
        backend.add_config(None)  # no config text: one run holds many stage configs
        backend.close()
    assert len(glob.glob(osp.join(run_dir, 'events.out.tfevents.*'))) == 2  # one file per stage, one folder
    events = EventAccumulator(run_dir)
    events.Reload()
    assert sorted(events.Tags()['scalars']) == ['k1/m0/loss', 'k1/m0/lr', 'k1/m0/mIoU', 'm0/loss', 'm0/lr', 'm0/mIoU']
    assert [(e.step, e.value) for e in events.Scalars('k1/m0/loss')] == [(1, 2.0), (2, 1.5), (3, 1.25)]
    assert [(e.step, e.value) for e in events.Scalars('m0/mIoU')] == [(2, 32.0)]
    assert events.Tags()['tensors'] == []  # no config text


def test_wandb_stages_resume_one_run(tmp_path):
    """Every stage's wandb.init continues the same run (built lazily: wandb need not be installed to check)."""
    backend = stage_backend(str(tmp_path), 'k1/m1', dict(type='WandbVisBackend', init_kwargs=dict(project='bdl')))
    kwargs = backend.backend._init_kwargs
    assert kwargs['id'] == run_id('/runs/bdl_toy') and kwargs['id'].startswith('bdl_toy-') and len(kwargs['id']) == 16
    assert (kwargs['resume'], kwargs['name'], kwargs['project']) == ('allow', 'bdl_toy', 'bdl')
    assert backend.backend._save_dir == str(tmp_path)
    assert run_id('/runs/bdl_toy') != run_id('/runs/other/bdl_toy')  # same name, another run


def test_stage_vis_backends_wrap_all_but_local(tmp_path):
    from bdl_mm.visualization import stage_vis_backends
    work = str(tmp_path / 'bdl_toy')
    outer = stage_vis_backends([dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')], 'run', work)
    assert outer[0] == dict(type='LocalVisBackend')  # per stage folder: <stage>/<timestamp>/vis_data
    assert outer[1] == dict(type='StageVisBackend', backend=dict(type='TensorboardVisBackend'), stage='run',
                            save_dir=osp.join(work, 'vis_data'), run_name=run_id(work))
    stage = stage_vis_backends(outer, 'k1/m0', work)  # an M stage's config is derived from the outer one
    assert stage[1] == dict(outer[1], stage='k1/m0') and stage[0] == outer[0]
