# Algorithm 1, GTA5 -> Cityscapes, DeepLabV2-R101 (configs/bdl_gta5.py) with FDA (Yang & Soatto, CVPR 2020) in F's
# place: a translation baseline, no training. The translation stage records FDA's settings and the list of target
# images (k{k}/translation/translator.json); the translate stage gives each GTA5 image, at its own resolution, the
# low-frequency amplitude of a Cityscapes train image (resized to it) drawn by a seeded hash of its path (with K > 1 a
# later round reuses round 1's translated images). The paper trains one model per beta in {0.01, 0.05, 0.09}:
#   python tools/train.py configs/bdl_gta5_fda.py --cfg-options train_cfg.stages.translation.beta=0.05
# Another baseline: train_cfg.stages.translation.type=Reinhard (colour statistics of the target set).
_base_ = ['./bdl_gta5.py']
# K = 1: a baseline does not depend on M, and every M run starts from the same initial weights (m_init='initial'),
# so a second round would repeat the first exactly (same S', same seeds).
train_cfg = dict(K=1, stages=dict(translation=dict(_delete_=True, type='FDA', beta=0.01)))
