# Algorithm 1 of the paper as the training loop (BidirectionalLoop): K outer rounds, each training F, translating
# the source and training M N + 1 times with pseudo labels from the second on; Table 1's ablation switches; each
# stage's settings. Every M run starts from the same initial weights (release, m_init='initial'): the config's
# load_from (a converted initialisation, keys prefixed 'segmentor.') or the seeded random init.
#
# Every M stage trains with M's schedule, so the loop is completed by a file that has both this file and M's schedule
# as bases (algorithm1_<schedule>.py beside it; mmengine refuses two bases that both define `train_cfg`, hence the
# loop's own variable). It fills the M stages' loops from the schedule's train_cfg and train_cfg_ssl:
#   train_cfg = dict(_base_.algorithm1, _delete_=True, stages=dict(_base_.algorithm1.stages,
#       source_only=dict(train_cfg=_base_.train_cfg), adaptation=dict(train_cfg=_base_.train_cfg),
#       ssl_adaptation=dict(train_cfg=_base_.train_cfg_ssl)))
# `algorithm1` is read only when the bases are merged: experiment configs change the loop through `train_cfg`
# (e.g. --cfg-options train_cfg.K=1).
algorithm1 = dict(
    type='BidirectionalLoop',
    K=2,  # outer rounds (paper: K = 2)
    N=2,  # SSL rounds per outer round (paper: N = 2)
    m_init='initial',
    # ablations (Table 1 rows): no F (use_translation), plain CycleGAN (perceptual), no D_M (adversarial), no SSL
    use_translation=True,
    perceptual=True,
    adversarial=True,  # the one switch of D_M: the adaptation stages' model.adversarial follows it
    use_ssl=True,
    source_only_checkpoint=None,  # a trained M(0) instead of training it
    stages=dict(
        source_only=dict(train_cfg=None),  # M's loop without pseudo labels, from M's schedule
        # F: experiments set config (path relative to the experiment config's folder) and cfg_options
        translation=dict(config=None, cfg_options=dict()),
        translate=dict(batch_size=1),
        adaptation=dict(train_cfg=None),  # as source_only
        # release: per-class min(median confidence, 0.9); paper: mode='global'
        pseudo_label=dict(mode='class_median', threshold=0.9, median='release'),
        ssl_adaptation=dict(train_cfg=None)))  # M's loop with pseudo labels, from M's schedule
