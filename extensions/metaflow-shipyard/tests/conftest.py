"""The project's own fixtures: an isolated workspace per test."""

from tests.conftest import _isolated_settings, project, workspace  # noqa: F401
