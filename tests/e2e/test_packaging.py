"""The distribution declares every package folder, so an installed wheel has all the code, and a wheel carries
the model bundle folder (its README, and the bundle once it is committed there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

DATA_ONLY = {"sarcoscreen.inference.engines.unet.shipped": "inference/engines/unet/shipped"}
"""Package folders that hold data only (no Python): the shipped model bundle (unet/shipped_bundle.py)."""


def _setuptools() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_folder_is_declared() -> None:
    tool = _setuptools()
    declared = set(tool["packages"])
    mapping = tool["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (PROJECT_ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(PROJECT_ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == declared - set(DATA_ONLY)
    for package, folder in DATA_ONLY.items():
        assert package in declared
        assert (PROJECT_ROOT / folder).is_dir()
        assert not list((PROJECT_ROOT / folder).glob("*.py")), f"{folder} is data only"


@pytest.mark.slow
def test_the_wheel_carries_the_shipped_bundle_folder(tmp_path: Path) -> None:
    """A wheel built from the sources has ``shipped/README.txt`` and, when the bundle is committed, its manifest
    and weights (``[tool.setuptools.package-data]``), with no setuptools warning about the data folder."""
    source = tmp_path / "src"
    source.mkdir()
    for folder in _setuptools()["package-dir"].values():
        shutil.copytree(PROJECT_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.build_wheel(sys.argv[1]))", str(tmp_path / "dist")],
                           cwd=source, capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    assert "shipped' is absent from the `packages`" not in build.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if "/unet/shipped/" in n}
    folder = "sarcoscreen/inference/engines/unet/shipped/"
    shipped = {folder + p.name for p in (PROJECT_ROOT / DATA_ONLY[next(iter(DATA_ONLY))]).iterdir()
               if p.name in ("README.txt", "manifest.json", "model.safetensors")}
    assert folder + "README.txt" in names
    assert names == shipped


def test_console_script_points_at_the_cli() -> None:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["project"]["scripts"]["sarcoscreen"] == "sarcoscreen.node.cli:main"
    from sarcoscreen.node.cli import main

    assert callable(main)
