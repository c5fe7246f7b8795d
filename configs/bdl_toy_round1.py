# The first round of Algorithm 1 only, for screening F's switches on the toy shift families: M(0), F(1), S' = F(S) and
# M_0(1), no pseudo labels; beside it the colour-transfer track's M_0(1) (Reinhard in F's place) and the oracle.
# 6 stages, about 11 minutes at one thread (F is most of it). For example, the structure loss (docs/fidelity.md,
# row 15):
#   python tools/shift_study.py --config configs/bdl_toy_round1.py --families texture_layout swap --seeds 0 1 2 \
#       --jobs 2 --threads 1 --work-dir work_dirs/f_screen \
#       --cfg-options train_cfg.stages.translation.cfg_options.model.structure_loss.weight=1.0
# In its results table "BDL final" is M_0(1), not BDL; "colour transfer" is the Reinhard track's M_0(1).
_base_ = ['./bdl_toy.py']

train_cfg = dict(
    K=1,
    use_ssl=False,
    references=dict(_delete_=True, oracle=dict(), reinhard=dict(translation=dict(type='Reinhard'), use_ssl=False)))
