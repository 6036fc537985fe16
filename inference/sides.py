"""Which side's value is used for screening when both legs are measured."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SideRule"]


class SideRule(StrEnum):
    """How the per-side SMI values become the one compared with a cut-off.

    ``mean`` of both sides (default), ``min`` (the weaker side, e.g. after hip surgery), or one side.
    """

    LEFT = "left"
    RIGHT = "right"
    MEAN = "mean"
    MIN = "min"

    def apply(self, left: float | None, right: float | None) -> float | None:
        """The screening value, or ``None`` when a side it needs is missing."""
        if self is SideRule.LEFT:
            return left
        if self is SideRule.RIGHT:
            return right
        if left is None or right is None:
            return None
        return (left + right) / 2 if self is SideRule.MEAN else min(left, right)
