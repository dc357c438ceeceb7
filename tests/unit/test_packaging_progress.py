"""The progress display of long packaging steps: stderr only, silent when quiet."""

from __future__ import annotations

import pytest

from shipyard.packaging.progress import progress


def test_progress_logs_each_step_on_stderr_and_keeps_stdout_clean(capsys: pytest.CaptureFixture[str]) -> None:
    with progress() as say:
        say("building shipyard/iris:v1")
        say("Step 2/9 : COPY bento /home/bento")
    out, err = capsys.readouterr()
    assert out == ""
    assert "building shipyard/iris:v1" in err and "Step 2/9 : COPY bento /home/bento" in err


def test_quiet_progress_shows_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress(quiet=True) as say:
        say("building shipyard/iris:v1")
    assert capsys.readouterr() == ("", "")


def test_the_display_ends_when_a_step_raises(capsys: pytest.CaptureFixture[str]) -> None:
    display = progress()
    with pytest.raises(RuntimeError, match="build failed"), display as say:
        say("building")
        raise RuntimeError("build failed")
    assert display._status is None
    assert "building" in capsys.readouterr().err


def test_base_image_keeps_the_old_import_path() -> None:
    from shipyard.packaging import base_image

    assert base_image.progress is progress
