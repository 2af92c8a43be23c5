"""Checks on the project foundation: pinned requirements, safe server config, and that the
dashboard really serves and renders in a browser."""

from __future__ import annotations

import re
import tomllib
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][A-Za-z0-9.+!-]*)$")


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            lines.append(line)
    return lines


def test_requirements_are_pinned_exactly() -> None:
    lines = _requirement_lines(REPO_ROOT / "requirements.txt")
    assert lines, "requirements.txt is empty"
    unpinned = [line for line in lines if not PIN.match(line)]
    assert not unpinned, f"every requirement must be pinned with '==': {unpinned}"
    pins = {PIN.match(line)["name"].lower(): PIN.match(line)["version"] for line in lines}
    assert pins.get("torch") == "2.13.0", "torch must stay pinned to exactly 2.13.0"
    for name in ("streamlit", "plotly", "pandas", "numpy"):
        assert name in pins, f"{name} is imported by the app and must be pinned"


def test_dev_requirements_include_runtime_and_are_pinned() -> None:
    lines = _requirement_lines(REPO_ROOT / "requirements-dev.txt")
    assert "-r requirements.txt" in lines
    others = [line for line in lines if not line.startswith("-r ")]
    assert others and all(PIN.match(line) for line in others), others


def test_streamlit_config_has_safe_defaults() -> None:
    with open(REPO_ROOT / ".streamlit" / "config.toml", "rb") as f:
        config = tomllib.load(f)
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["port"] == 8501
    assert config["browser"]["gatherUsageStats"] is False


def test_streamlit_server_health_answers_ok(streamlit_server: str) -> None:
    with urllib.request.urlopen(f"{streamlit_server}/_stcore/health", timeout=10) as resp:
        assert resp.status == 200
        assert resp.read().decode().strip() == "ok"


@pytest.mark.browser
def test_browser_sees_dashboard_title(streamlit_server: str, browser_page) -> None:
    from playwright.sync_api import expect

    browser_page.goto(streamlit_server, wait_until="domcontentloaded")
    heading = browser_page.get_by_role("heading", name="Gradient Explosion Lab").first
    heading.wait_for(state="visible", timeout=60_000)
    assert "Gradient Explosion Lab" in heading.inner_text()
    expect(browser_page).to_have_title("Gradient Explosion Lab", timeout=30_000)
