# Algorithm 1 on the toy data (configs/bdl_toy.py) with FDA (Yang & Soatto, CVPR 2020) in F's place: a translation
# baseline, no training. The translation stage records FDA's settings and the target images it draws from
# (k{k}/translation/translator.json); the translate stage gives each source image the low-frequency amplitude of a
# target image drawn by a seeded hash of its path. Beta: 0.01 here; the paper also uses 0.05 and 0.09
#   python tools/train.py configs/bdl_toy_fda.py --cfg-options train_cfg.stages.translation.beta=0.05
# Another baseline: train_cfg.stages.translation.type=Reinhard (colour statistics of the target set).
_base_ = ['./bdl_toy.py']
# K = 1: a baseline does not depend on M, and every M run starts from the same weights (M(0): the toy's
# m_init='source_only'), so a second round would repeat the first exactly (same S', same seeds).
# References: the oracle, the colour transfer and BDL itself (F with its perceptual loss, K = 2, N = 2: the run of
# configs/bdl_toy.py) through the same plan, from this run's M(0).
train_cfg = dict(
    K=1,
    stages=dict(translation=dict(_delete_=True, type='FDA', beta=0.01)),
    references=dict(
        _delete_=True,
        oracle=dict(),
        reinhard=dict(translation=dict(type='Reinhard')),
        bdl=dict(translation=dict(config='translation/perceptual_cyclegan_deeplabv2-r101_gta5-to-cityscapes.py',
                                  cfg_options=_base_.translation_cfg_options), K=2)))
