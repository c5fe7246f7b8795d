# Runtime shared by every bdl_mm config (MMSeg conventions). bdl_mm registers its modules on import.
default_scope = 'mmseg'
custom_imports = dict(imports=['bdl_mm'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # nccl on GPUs; for CPU-only distributed runs pass --cfg-options env_cfg.dist_cfg.backend=gloo
    dist_cfg=dict(backend='nccl'),
)
# LocalVisBackend: <stage>/<timestamp>/vis_data/scalars.json (read by tools/status.py). Every other backend gets all
# the stages of a BDL run in one run, tagged <stage>/<scalar> (StageVisBackend): TensorBoard in <work_dir>/vis_data;
# for W&B (pip install wandb) add dict(type='WandbVisBackend', init_kwargs=dict(project='bdl')).
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=2),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
tta_model = dict(type='SegTTAModel')
randomness = dict(seed=0)
