# Algorithm 1 of the paper as the training loop, on top of the fcn8s_adam_step schedule of M: every M stage uses this
# schedule's optimisers; the stage loops below are the release's early stops (80k iterations without pseudo
# labels, 120k with). Every M run starts from the same initial weights (release, m_init='initial'): the
# config's load_from (a converted initialisation, keys prefixed 'segmentor.') or the seeded random init.
_base_ = ['./fcn8s_adam_step.py']
train_cfg = dict(
    _delete_=True,
    type='BidirectionalLoop',
    K=2,  # outer rounds (paper: K = 2)
    N=2,  # SSL rounds per outer round (paper: N = 2)
    m_init='initial',
    # ablations (Table 1 rows): no F (use_translation), plain CycleGAN (perceptual), no D_M (adversarial), no SSL
    use_translation=True,
    perceptual=True,
    adversarial=True,
    use_ssl=True,
    source_only_checkpoint=None,  # a trained M(0) instead of training it
    stages=dict(
        source_only=dict(train_cfg=_base_.train_cfg),
        # F: experiments set  (path relative to the experiment config's folder) and cfg_options
        translation=dict(config=None, cfg_options=dict()),
        translate=dict(batch_size=1),
        adaptation=dict(train_cfg=_base_.train_cfg),
        # release: per-class min(median confidence, 0.9); paper: mode='global'
        pseudo_label=dict(mode='class_median', threshold=0.9, median='release'),
        ssl_adaptation=dict(train_cfg=_base_.train_cfg_ssl)))
