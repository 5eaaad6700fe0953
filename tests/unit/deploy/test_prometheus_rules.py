"""The shipped Prometheus configuration and alert rules, checked by Prometheus's own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: run `bash deploy/local/promtool.sh`")
    return subprocess.run(
        [tool, *arguments], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


def test_promtool_accepts_the_configuration_and_its_rules() -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerts_fire_on_what_they_are_about_and_only_that() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
