"""How a user names a model: ``ModelRef`` and its one parser.

Grammar (whitespace around it is ignored)::

    NAME/VERSION            iris/3            a registered version
    NAME@ALIAS              iris@champion     the version an alias points at
    models:/NAME/VERSION    models:/iris/3    MLflow's model URI, the same two forms
    models:/NAME@ALIAS
    RUN_ID                  3f2a…(32 hex)     an MLflow run (not registered yet)

``str(ref)`` gives the short form (``iris/3``, ``iris@champion``, the run id)
and ``ModelRef.parse(str(ref)) == ref``. Turning a reference into a registered
version is :func:`shipyard.registry.resolve`'s job, and nobody else's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ModelNotFound

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_VERSION_REF = re.compile(r"^(?:models:/)?(?P<name>[^/@\s][^/@]*?)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z_][\w.-]*))$")
GRAMMAR = "NAME/VERSION, NAME@ALIAS, models:/NAME/VERSION, models:/NAME@ALIAS or an MLflow run id"


@dataclass(frozen=True)
class ModelRef:
    """A reference to a model version (by number or alias) or to the run that logged it.

    Exactly one of ``version``, ``alias`` and ``run_id`` is set; ``name`` is set
    unless it is a run.

    Example:
        >>> ModelRef.parse("models:/iris/3")
        ModelRef(name='iris', version='3', alias=None, run_id=None)
        >>> str(ModelRef.parse("iris@champion"))
        'iris@champion'
    """

    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse one reference (see the module's grammar).

        Raises:
            ModelNotFound: ``text`` is not a reference.
        """
        raw = str(text).strip()
        if _RUN_ID.match(raw):
            return cls(run_id=raw)
        match = _VERSION_REF.match(raw)
        if match is None:
            raise ModelNotFound(
                f"{text!r} is not a model version reference or a run id.",
                hint=f"Use {GRAMMAR}, e.g. 'iris/3' or 'iris@champion'.",
            )
        return cls(name=match["name"], version=match["version"], alias=match["alias"])

    @classmethod
    def of(cls, value: Any) -> ModelRef:
        """A reference to whatever names a model: text, a ``ModelRef``, a registered version
        (anything with ``name`` and ``version``), a ``RunResult`` or a ``LoggedModel``.

        Raises:
            ModelNotFound: ``value`` names no model.
        """
        if isinstance(value, ModelRef):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        run_id = getattr(value, "mlflow_run_id", None)
        if isinstance(run_id, str) and run_id:
            return cls(run_id=run_id)
        name, version = getattr(value, "name", None), getattr(value, "version", None)
        if isinstance(name, str) and version is not None and str(version).isdigit():
            return cls(name=name, version=str(version))
        run_id = getattr(value, "run_id", None)
        if isinstance(run_id, str) and _RUN_ID.match(run_id):
            return cls(run_id=run_id)
        raise ModelNotFound(
            f"Cannot tell which model {value!r} is.",
            hint=f"Pass {GRAMMAR}, a RunResult (shipyard.run) or a registered version.",
        )

    @property
    def is_run(self) -> bool:
        return self.run_id is not None

    @property
    def uri(self) -> str:
        """MLflow's URI for the reference (``models:/iris/3``, ``models:/iris@champion``, ``runs:/ID``)."""
        return f"runs:/{self.run_id}" if self.is_run else f"models:/{self}"

    def __str__(self) -> str:
        if self.run_id is not None:
            return self.run_id
        return f"{self.name}/{self.version}" if self.version is not None else f"{self.name}@{self.alias}"


__all__ = ["GRAMMAR", "ModelRef"]
