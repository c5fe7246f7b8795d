"""The stage kinds of Algorithm 1, named once. Standard library only: ``tools/status.py`` reads a work dir
through :mod:`bdl_mm.engine.run_status` without importing torch or OpenMMLab."""

# Stage kinds, in the order of Algorithm 1, each the key of its settings in ``train_cfg.stages``.
SOURCE_ONLY, TRANSLATION, TRANSLATE = 'source_only', 'translation', 'translate'
ADAPTATION, PSEUDO_LABEL, SSL_ADAPTATION = 'adaptation', 'pseudo_label', 'ssl_adaptation'
STAGE_KINDS = (SOURCE_ONLY, TRANSLATION, TRANSLATE, ADAPTATION, PSEUDO_LABEL, SSL_ADAPTATION)
# the target-supervised reference (``train_cfg.references.oracle``): an M trained on the target's labelled train split
ORACLE = 'oracle'
# the kinds of the plan's own M stages (source-only, then the adaptation runs of each round)
PLAN_M_KINDS = (SOURCE_ONLY, ADAPTATION, SSL_ADAPTATION)
# every kind that trains (or imports) an M: the plan's, and the oracle
M_KINDS = PLAN_M_KINDS + (ORACLE, )
ALL_KINDS = STAGE_KINDS + (ORACLE, )
