"""Separation of duties (the four-eyes rule): who is acting, who may approve a version, and when enough have.

With ``separation_of_duties`` on, an approval is recorded under the
approver's identity from ``identity_source`` (never a name the caller
passes), and it is refused when that identity is the author of the run
behind the version or the person who started the promotion waiting for it.
``required_approvals`` distinct eligible people must approve before the
promotion goes on; one person approving twice counts once. Every approval
and every refusal is written to the version's tags and the audit log before
the call returns.

Q: Why are the approvals counted again by the promotion, when ``approve()`` already refused the barred ones?
A: An approval can be given before anyone starts the promotion, and then
   by the person who later starts it; only the promotion knows who started
   it. It counts what is eligible at the moment it would go on.

Q: Why does the ``os`` identity ignore the ``author`` setting?
A: ``author`` is a free-text name for audit records that anyone may set; an
   identity that the approver can choose would make the rule a formality.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .._core import audit, lineage
from .._core.config import Settings
from .._core.errors import ApprovalRefused, ConfigError
from .._core.workspace import Workspace, os_user, slug

# MLflow's auth app answers this with the user the request authenticated as (mlflow >= 3.5)
CURRENT_USER_ENDPOINT = "/api/2.0/mlflow/users/current"


def current_identity(settings: Settings) -> str:
    """Who is acting, from ``identity_source``.

    - ``os``: the OS login name (``getpass.getuser()``);
    - ``env``: the value of the variable ``identity_env`` names (default ``SHIPYARD_IDENTITY``);
    - ``tracking``: the user the MLflow tracking server authenticates the request as, asked of the
      server itself (``GET /api/2.0/mlflow/users/current`` of MLflow's ``basic-auth`` app or any auth
      app that serves it) with the credentials MLflow's client sends (``MLFLOW_TRACKING_USERNAME`` /
      ``MLFLOW_TRACKING_PASSWORD``, ``~/.mlflow/credentials``, ``MLFLOW_TRACKING_TOKEN`` or an
      ``MLFLOW_TRACKING_AUTH`` plugin), so a user name without its password is not enough.

    Raises:
        ConfigError: the variable is unset or empty, or the tracking server is not a server,
            authenticates nobody, or refuses the credentials.

    Example:
        >>> current_identity(Settings(identity_source="env", identity_env="CI_USER"))   # doctest: +SKIP
        'ada'
    """
    if settings.identity_source == "env":
        value = os.environ.get(settings.identity_env, "").strip()
        if not value:
            raise ConfigError(
                f"identity_source is env, but {settings.identity_env} is not set, so nobody can be named as approver.",
                hint=f"Set {settings.identity_env} to the approver's name (from your CI system's user variable, "
                "for example), or name another variable with identity_env.",
            )
        return value
    if settings.identity_source == "tracking":
        return _tracking_user(settings.tracking_uri)
    return os_user()


def _tracking_user(uri: str | None) -> str:
    if not uri or not uri.startswith(("http://", "https://")):
        raise ConfigError(
            f"identity_source is tracking, but the tracking store ({uri or 'the embedded sqlite store'}) is no server "
            "that authenticates users.",
            hint="Set tracking_uri to an MLflow server started with --app-name basic-auth, or use identity_source "
            "os or env.",
        )
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), CURRENT_USER_ENDPOINT, "GET", max_retries=0,
                                timeout=10, raise_on_status=False)
    except Exception as exc:  # MLflow raises its own errors and requests' here
        raise ConfigError(
            f"identity_source is tracking, but the tracking server {uri} could not be asked who you are: "
            f"{type(exc).__name__}.",
            hint="Check that the server is up (shipyard doctor) and try again.",
        ) from exc
    if response.status_code in (401, 403):
        raise ConfigError(
            f"The tracking server {uri} refused your credentials (HTTP {response.status_code}).",
            hint="Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to your "
            "own account on that server.",
        )
    username = _username(response) if response.status_code == 200 else None
    if not username:
        raise ConfigError(
            f"The tracking server {uri} authenticates nobody (HTTP {response.status_code} from "
            f"{CURRENT_USER_ENDPOINT}), so it cannot say who is approving.",
            hint="Start the server with --app-name basic-auth (MLflow's authentication), or use identity_source "
            "os or env.",
        )
    return username


def _username(response: Any) -> str | None:
    try:
        user = response.json().get("user") or {}
    except ValueError:
        return None
    name = user.get("username") if isinstance(user, dict) else None
    return name if isinstance(name, str) and name.strip() else None


def same_person(a: str, b: str) -> bool:
    """Identities compare without case and surrounding blanks (``Ada`` is ``ada``)."""
    return a.strip().casefold() == b.strip().casefold()


def identity_key(identity: str) -> str:
    """The part of a tag name that stands for one person (MLflow tag keys take few characters).

    Example:
        >>> identity_key("Ada Lovelace <ada@example.com>"), identity_key("Eng-1")
        ('ada-lovelace-ada-example-com-9b47c7', 'eng-1')
    """
    return slug(identity.strip().casefold())  # a name not already of a slug's form gets its hash: no two collide


def approvals_needed(settings: Settings) -> int:
    """How many distinct approvals a promotion needs: 0 when none is required.

    Separation of duties and more than one required approval each imply ``require_approval``:
    a rule on approvals that could be skipped would protect nothing.
    """
    if settings.require_approval or settings.separation_of_duties or settings.required_approvals > 1:
        return settings.required_approvals
    return 0


def counts_approvals(settings: Settings) -> bool:
    """True when approvals are counted person by person (else one review record decides, as without the rule)."""
    return approvals_needed(settings) > 0 and (settings.separation_of_duties or settings.required_approvals > 1)


def starter(settings: Settings) -> str:
    """Who is starting a promotion, recorded by its first stage ("" when separation of duties is off)."""
    return current_identity(settings) if settings.separation_of_duties else ""


def run_author(ws: Workspace, version: Any) -> str:
    """The author of the run behind ``version`` (its ``mlflow.user`` tag), or "" when unknown."""
    if not version.run_id:
        return ""
    from mlflow.exceptions import MlflowException

    from ..tracking._client import client_for

    try:
        return client_for(ws).get_run(version.run_id).data.tags.get(lineage.MLFLOW_USER, "")
    except MlflowException:  # the run was deleted: only the promoter rule can be checked
        return ""


def barred(ws: Workspace, version: Any, *, promoter: str | None = None) -> dict[str, str]:
    """Identity → the rule that bars it from approving ``version`` (``author`` or ``promoter``)."""
    found: dict[str, str] = {}
    started = promoter if promoter is not None else version.tags.get(lineage.REVIEW_REQUESTED_BY, "")
    if started:
        found[started] = "promoter"
    if author := run_author(ws, version):
        found[author] = "author"  # the stronger reason when one person is both
    return found


def _bar(identity: str, bars: dict[str, str]) -> str | None:
    return next((rule for who, rule in bars.items() if same_person(who, identity)), None)


@dataclass(frozen=True)
class Tally:
    """The approvals of a version as a promotion counts them.

    Attributes:
        counted: one approval per eligible person (``by``, ``at``, ``comment``, ``identity_source``), oldest first.
        needed: how many the promotion needs.
        ignored: identity → rule, of recorded approvals that do not count (given before their giver was barred).
    """

    counted: tuple[dict[str, str], ...]
    needed: int
    ignored: dict[str, str]

    @property
    def enough(self) -> bool:
        return len(self.counted) >= self.needed


def tally(ws: Workspace, version: Any, *, needed: int, promoter: str | None = None) -> Tally:
    """Count the distinct approvals recorded on ``version`` (with separation of duties: the eligible ones)."""
    bars = barred(ws, version, promoter=promoter) if ws.settings.separation_of_duties else {}
    counted, ignored = [], {}
    for record in sorted(lineage.approvals(version.tags).values(), key=lambda r: r["at"]):
        if rule := _bar(record["by"], bars):
            ignored[record["by"]] = rule
        else:
            counted.append(record)
    return Tally(tuple(counted), needed, ignored)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_RULES = {
    "author": ("is the author of the run behind {version}", "the run's author may not approve their own model"),
    "promoter": ("started the promotion of {version}", "whoever starts a promotion may not approve it"),
}


def approve(ws: Workspace, version: Any, comment: str, reviewer: str | None) -> dict[str, str]:
    """Record ``comment`` as an approval of ``version`` by the current identity, or refuse it.

    Returns:
        The review record: ``state`` (``approved`` once enough people have, else ``pending``), ``by``,
        ``at``, ``comment``, ``approvals`` (``"<counted>/<required>"``).

    Raises:
        ApprovalRefused: the approver is the run's author or the promotion's starter, or ``reviewer``
            names someone else (recorded in the tags and the audit log first).
        ConfigError: the identity cannot be read (see :func:`current_identity`).
    """
    from .. import registry

    settings = ws.settings
    source = settings.identity_source if settings.separation_of_duties else "reviewer" if reviewer else "author"
    identity = current_identity(settings) if settings.separation_of_duties else (reviewer or ws.author)
    needed = approvals_needed(settings) or 1
    if settings.separation_of_duties:
        if reviewer is not None and not same_person(reviewer, identity):
            _refuse(ws, version, identity, "identity", comment, source)
            raise ApprovalRefused(
                f"Approving {version} as {reviewer!r} is refused: with separation_of_duties on, approvals are "
                f"recorded under your own identity ({identity!r}, from identity_source {source}).",
                rule="identity", who=identity,
                hint=f"Leave reviewer out; {reviewer} approves with their own identity.",
            )
        if rule := _bar(identity, barred(ws, version)):
            _refuse(ws, version, identity, rule, comment, source)
            what, why = _RULES[rule]
            raise ApprovalRefused(
                f"Approval of {version} by {identity} is refused by the separation of duties: {identity} "
                f"{what.format(version=version)}, and {why}.",
                rule=rule, who=identity,
                hint=f"Ask someone else to approve it (shipyard approve {version} -m '...'); the refusal is recorded.",
            )
    key = identity_key(identity)
    repeat = key in lineage.approvals(version.tags)
    at = _now()
    tags = {lineage.approval_tag(key, f): v for f, v in
            (("by", identity), ("at", at), ("comment", comment), ("identity_source", source))}
    registry.set_version_tags(version, tags, workspace=ws)
    version = registry.resolve(version, workspace=ws)  # count what the store now holds
    counted = tally(ws, version, needed=needed)
    record = {"state": "approved" if counted.enough else "pending", "by": identity, "at": at, "comment": comment,
              "approvals": f"{len(counted.counted)}/{needed}"}
    registry.set_version_tags(version, {lineage.review_tag(k): v for k, v in record.items()}, workspace=ws)
    audit.append("review.approved", workspace=ws, who=identity, identity_source=source, model=version.name,
                 version=version.version, comment=comment, approvals=len(counted.counted), required=needed,
                 **({"repeat": True} if repeat else {}))
    return record


def _refuse(ws: Workspace, version: Any, identity: str, rule: str, comment: str, source: str) -> None:
    from .. import registry

    key = identity_key(identity)
    registry.set_version_tags(
        version,
        {lineage.refusal_tag(key, f): v for f, v in
         (("by", identity), ("at", _now()), ("rule", rule), ("comment", comment))},
        workspace=ws,
    )
    audit.append("review.refused", workspace=ws, who=identity, identity_source=source, rule=rule,
                 model=version.name, version=version.version, comment=comment)


def request(ws: Workspace, version: Any, promoter: str) -> None:
    """Record on ``version`` who started the promotion waiting for its approval (the first one keeps it)."""
    from .. import registry

    if promoter and not version.tags.get(lineage.REVIEW_REQUESTED_BY):
        registry.set_version_tags(version, {lineage.REVIEW_REQUESTED_BY: promoter}, workspace=ws)


__all__ = ["Tally", "approvals_needed", "approve", "counts_approvals", "current_identity", "identity_key", "tally"]
