"""Promotion: the ordered, resumable, all-or-nothing path from a run to a deployable champion,
and the engineer's side of it: review, approve or reject, roll back, retire."""

from __future__ import annotations

from ._machine import StageEvent
from ._promote import Promotion, promote
from ._review import Review, approve, reject, retire, review, rollback

__all__ = ["Promotion", "Review", "StageEvent", "approve", "promote", "reject", "retire", "review", "rollback"]
