"""The M stages: M(0) (trained on S, or imported), the adaptation runs M_0(k) and M_i(k), and the oracle."""
from ...structures.plan import Stage
from .common import build_child, finish_m, release_workers, train_m
from .context import StageContext
from .translation import write_ssl_baseline_source


def run_source_only(ctx: StageContext, stage: Stage, inputs: dict) -> dict:
    """M(0) on the labelled source, from the initial weights; or ``train_cfg.source_only_checkpoint`` imported."""
    if ctx.plan.source_only_checkpoint is not None:
        return import_source_only(ctx, stage)
    return train_m(ctx, stage, None, None, inputs['start_from']['checkpoint'])


def import_source_only(ctx: StageContext, stage: Stage) -> dict:
    """Use a trained M(0) checkpoint (BDLSegmentor or plain segmentor keys); evaluated and exported like a
    trained one."""
    cfg = ctx.configs.import_cfg(stage)
    child = build_child(ctx, cfg)
    checkpoint = ctx.plan.source_only_checkpoint
    # a plain segmentor checkpoint gets the `segmentor.` prefix of BDLSegmentor's keys
    child.load_checkpoint(checkpoint,
                          revise_keys=[(r'^module\.', ''), (r'^(?!segmentor\.|discriminator\.)', 'segmentor.')])
    metrics = child.val()
    release_workers(child)
    return finish_m(ctx, child, cfg, metrics, imported=checkpoint)


def run_oracle(ctx: StageContext, stage: Stage, inputs: dict) -> dict:
    """The target-supervised reference, from the weights every adaptation run starts from."""
    return train_m(ctx, stage, None, None, inputs['start_from']['checkpoint'])


def run_adaptation(ctx: StageContext, stage: Stage, inputs: dict) -> dict:
    """M_0(k) on S'(k) (or S) + T, and M_i(k) with the pseudo labels of T too (``ssl_adaptation``; with
    ``train_cfg.ssl_baseline_source`` on B(S) too, written by the first of them; M_0(k) too under
    ``train_cfg.second_source_all_stages``)."""
    translated = inputs.get('translated')
    pseudo = inputs.get('pseudo_labels')
    if ctx.plan.second_copy(stage) and ctx.plan.ssl_baseline_source:  # rows 21, 22: B(S), written once per run
        write_ssl_baseline_source(ctx)
    result = train_m(ctx, stage, translated['translated_dir'] if translated else None,
                     pseudo['pseudo_label_dir'] if pseudo else None, inputs['start_from']['checkpoint'])
    if pseudo is not None:
        result['kept_ratio'] = pseudo.get('kept_ratio')
    return result
