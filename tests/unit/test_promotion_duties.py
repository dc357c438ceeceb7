"""Who is approving (the identity sources) and the counting rules of the separation of duties."""

from __future__ import annotations

import getpass

import pytest

from shipyard import ConfigError
from shipyard._core import lineage
from shipyard._core.config import Settings
from shipyard.promotion import _duties


def test_the_os_source_is_the_login_and_ignores_the_author_setting() -> None:
    assert _duties.current_identity(Settings(author="someone-else")) == getpass.getuser()


def test_the_env_source_reads_the_named_variable_and_refuses_an_empty_one(monkeypatch) -> None:
    settings = Settings(identity_source="env", identity_env="SHIPYARD_TEST_APPROVER")
    monkeypatch.setenv("SHIPYARD_TEST_APPROVER", "  eng-1 ")
    assert _duties.current_identity(settings) == "eng-1"
    monkeypatch.setenv("SHIPYARD_TEST_APPROVER", " ")
    with pytest.raises(ConfigError, match="SHIPYARD_TEST_APPROVER is not set") as err:
        _duties.current_identity(settings)
    assert "identity_env" in (err.value.hint or "")


def test_the_default_identity_variable_is_known_and_a_bad_variable_name_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("SHIPYARD_IDENTITY", "eng-2")
    assert _duties.current_identity(Settings(identity_source="env")) == "eng-2"
    with pytest.raises(ValueError, match="identity_env"):
        Settings(identity_source="env", identity_env="NOT A NAME")


def test_the_tracking_source_needs_a_server(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "eng-1")  # a name alone proves nothing without a server
    with pytest.raises(ConfigError, match="is no server that authenticates users"):
        _duties.current_identity(Settings(identity_source="tracking"))
    with pytest.raises(ConfigError, match="embedded|sqlite"):
        _duties.current_identity(Settings(identity_source="tracking", tracking_uri="sqlite:///mlflow.db"))


def test_approvals_are_needed_when_any_rule_asks_for_them() -> None:
    assert _duties.approvals_needed(Settings()) == 0
    assert _duties.approvals_needed(Settings(require_approval=True)) == 1
    assert _duties.approvals_needed(Settings(separation_of_duties=True)) == 1
    assert _duties.approvals_needed(Settings(required_approvals=2)) == 2
    assert not _duties.counts_approvals(Settings(require_approval=True))  # one review record, as before
    assert _duties.counts_approvals(Settings(separation_of_duties=True))


def test_one_person_is_one_key_whatever_the_case_and_the_key_is_a_valid_tag_name() -> None:
    assert _duties.identity_key("Ada ") == _duties.identity_key("ada")
    assert _duties.identity_key("a@b") != _duties.identity_key("a_b")
    assert _duties.same_person(" Ada", "ADA") and not _duties.same_person("ada", "bob")
    from mlflow.utils.validation import _validate_tag_name

    _validate_tag_name(lineage.approval_tag(_duties.identity_key("Ada Lovelace <ada@example.com>"), "by"))


def test_recorded_approvals_are_read_back_per_person() -> None:
    key = _duties.identity_key("eng-1")
    tags = {lineage.approval_tag(key, f): v for f, v in
            (("by", "eng-1"), ("at", "2026-12-02T03:00:00+00:00"), ("comment", "ok"), ("identity_source", "env"))}
    tags[lineage.refusal_tag(_duties.identity_key("ada"), "by")] = "ada"
    assert lineage.approvals(tags) == {key: {"by": "eng-1", "at": "2026-12-02T03:00:00+00:00", "comment": "ok",
                                             "identity_source": "env"}}
    assert list(lineage.refusals(tags)) == [_duties.identity_key("ada")]
    assert lineage.review(tags) == {}  # the per-person records are not part of the one review record
