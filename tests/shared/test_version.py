"""The bundled version constant cannot drift from pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

from chat.shared.version import VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_the_bundled_version_is_the_projects_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == VERSION
