# Copyright (c) bdl_mm contributors.
from .plan import (
                   ALL_KINDS,
                   INITIAL,
                   M_KINDS,
                   ORACLE,
                   PLAN_M_KINDS,
                   STAGE_KINDS,
                   Plan,
                   Stage,
                   build_plan,
                   describe,
                   format_plan,
                   parse_references,
)

__all__ = [
    'ALL_KINDS', 'INITIAL', 'M_KINDS', 'ORACLE', 'PLAN_M_KINDS', 'STAGE_KINDS', 'Plan', 'Stage', 'build_plan',
    'describe', 'format_plan', 'parse_references'
]
