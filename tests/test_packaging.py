"""The distribution declares every package folder, so an installed wheel has all the code."""

from __future__ import annotations

import tomllib

from conftest import PROJECT_ROOT


def test_every_package_folder_is_declared() -> None:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    tool = config["tool"]["setuptools"]
    declared = set(tool["packages"])
    mapping = tool["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (PROJECT_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(PROJECT_ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == declared


def test_console_script_points_at_the_cli() -> None:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["project"]["scripts"]["sarcoscreen"] == "sarcoscreen.node.cli:main"
    from sarcoscreen.node.cli import main

    assert callable(main)
