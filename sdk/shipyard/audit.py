"""The workspace's tamper-evident audit log: read it and check its hash chain (see docs/audit.md).

Example:
    >>> result = shipyard.audit.verify()                  # doctest: +SKIP
    >>> result.ok, [p.message for p in result.problems]   # doctest: +SKIP
"""

from __future__ import annotations

from ._core.audit import Problem, Verification, read, verify

__all__ = ["Problem", "Verification", "read", "verify"]
