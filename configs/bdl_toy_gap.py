# A family's gap only: the source-only M(0) and the target-supervised oracle of configs/bdl_toy.py, nothing else of
# Algorithm 1 but one M_0(1) without F or SSL (output-space adversarial adaptation alone; the loop needs K >= 1).
# 3 stages. Used for the layout family's gap in the README:
#   python tools/shift_study.py --config configs/bdl_toy_gap.py --families layout --seeds 0 1 2 \
#       --work-dir work_dirs/layout_gap --threads 1
# In its results table "BDL final" is that adversarial-only M_0(1), not BDL.
_base_ = ['./bdl_toy.py']

train_cfg = dict(K=1, use_translation=False, use_ssl=False, references=dict(_delete_=True, oracle=dict()))
