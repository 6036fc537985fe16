"""``sarcoscreen demo``, the README's first command, end to end on a small phantom: the node on SQLite and local
folders receives the phantom from a real SCU, processes it and delivers SEG, SR and key image to the built-in
destination SCP; the output shows them, the results table and the ground-truth comparison."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pydicom
import pytest
from node_support import SARCOSCREEN

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_product(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run([*SARCOSCREEN, "demo", "--out", str(out), "--matrix", "96", "--slice-mm", "5",
                             "--destination", "builtin", "--timeout", "180"], capture_output=True, text=True,
                            timeout=300, check=False, cwd=tmp_path)
    text = result.stdout
    assert result.returncode == 0, text + result.stderr
    assert "3/3 outputs accepted by the destination" in text
    assert re.search(r"\n    web console http://127\.0\.0\.1:\d+/ - user demo, password \S{16} \(while the demo "
                     r"runs\)\n", text), text
    assert text.count("password") == 2  # printed once, and named in how to open the console afterwards
    assert f"web console    sarcoscreen --config {out / 'sarcoscreen.toml'} web" in text
    assert "At the destination (demo-pacs):" in text
    for line in ("SEG ", "SR ", "key image (SC)"):
        assert f"\n  {line}" in text
    assert "Engine against the phantom's exact ground truth" in text
    assert "Gluteal muscles" in text
    assert "processed" in text
    received = sorted(str(pydicom.dcmread(path, stop_before_pixels=True).Modality)
                      for path in (out / "destination").iterdir())
    assert received == ["OT", "SEG", "SR"]
    # The database and configuration stay for `sarcoscreen --config OUT/sarcoscreen.toml results|jobs`.
    jobs = subprocess.run([*SARCOSCREEN, "--config", str(out / "sarcoscreen.toml"), "jobs"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert jobs.returncode == 0, jobs.stderr
    assert "done" in jobs.stdout
    assert "3 sent of 3" in jobs.stdout
    assert "WARNING" not in result.stderr
    assert "ERROR" not in result.stderr
    _the_console_shows_the_demos_series(out, re.search(r"password (\S{16})", text)[1])  # type: ignore[index]


def _the_console_shows_the_demos_series(out: Path, password: str) -> None:
    """The web console on the demo's database (as `sarcoscreen --config OUT/sarcoscreen.toml web` serves it):
    the user ``demo`` with the printed password signs in, the results page lists the demo's series, and its page
    shows the overlay, served as the PNG the job wrote."""
    from web_support import Browser, running_console

    from sarcoscreen.db.session import create_engine_from_url
    from sarcoscreen.node.config import load_settings

    settings = load_settings(out / "sarcoscreen.toml", overrides={"web": {"port": 0}})
    db = create_engine_from_url(settings.database_url)
    try:
        with running_console(settings, db) as url:
            browser = Browser(url)
            try:
                assert browser.sign_in("demo", password).status_code == 303
                results = browser.get("/results").text
                (series_link,) = set(re.findall(r'href="(/series/\d+)"', results))
                page = browser.get(series_link).text
                (overlay,) = set(re.findall(r'src="(/jobs/\d+/overlay\.png)"', page))
                picture = browser.get(overlay)
            finally:
                browser.close()
    finally:
        db.dispose()
    assert picture.status_code == 200
    (written,) = (out / "sarcoscreen-data" / "outputs").rglob("overlay.png")
    assert picture.content == written.read_bytes()


def test_demo_with_the_bayesian_unet_says_which_engine_and_model(tmp_path: Path) -> None:
    """``--engine bayesian-unet`` runs the same flow with the U-Net (an untrained test bundle given by --bundle;
    without --bundle the shipped one) and says which engine, bundle, T and intended use it ran with."""
    pytest.importorskip("torch")
    from unet_bundles import INTENDED_USE, make_bundle

    bundle = tmp_path / "bundle"
    # untrained, but leaning to gluteus maximus so that the node's routing finds gluteal muscle
    manifest = make_bundle(bundle, favour={"gluteus_maximus_right": 2.0, "gluteus_maximus_left": 2.0})
    out = tmp_path / "demo"
    result = subprocess.run([*SARCOSCREEN, "demo", "--out", str(out), "--matrix", "96", "--slice-mm", "5",
                             "--destination", "builtin", "--timeout", "240", "--engine", "bayesian-unet",
                             "--bundle", str(bundle), "--mc-samples", "1"], capture_output=True, text=True,
                            timeout=400, check=False, cwd=tmp_path)
    text = result.stdout
    assert result.returncode == 0, text + result.stderr
    version = f"1.0+{manifest.weights_sha256[:12]}"
    assert "engine 'bayesian-unet'" in text
    assert (f"engine: bayesian-unet, model bundle test-public 0.1 (--bundle: {bundle.resolve()}; sha256 "
            f"{manifest.weights_sha256[:12]}), T = 1 Monte-Carlo dropout samples per slice") in text
    assert f"intended use: {INTENDED_USE}" in text
    assert f"measured by engine bayesian-unet {version}" in text
    assert f"bayesian-unet {version}" in text.split("Results (sarcoscreen results):")[1]  # the table's engine column
    assert "3/3 outputs accepted by the destination" in text
    config = (out / "sarcoscreen.toml").read_text()
    assert 'name = "bayesian-unet"' in config
    assert "mc_samples = 1" in config
    assert "ERROR" not in result.stderr


def test_demo_engine_options_are_checked_before_anything_starts(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from sarcoscreen.node.commands.demo import DemoEngineError, demo_engine
    from sarcoscreen.node.config import EngineSettings

    def args(**values: object) -> argparse.Namespace:
        return argparse.Namespace(**{"engine": "threshold", "bundle": None, "mc_samples": None, **values})

    settings, lines = demo_engine(args(), EngineSettings())
    assert (settings.name, lines) == ("threshold", ["engine: threshold"])
    with pytest.raises(DemoEngineError, match="options of --engine bayesian-unet"):
        demo_engine(args(mc_samples=2), EngineSettings())
    pytest.importorskip("torch")
    from sarcoscreen.inference.engines.unet import shipped_bundle

    monkeypatch.setattr(shipped_bundle, "shipped_folder", lambda: tmp_path)  # an installation without a bundle
    with pytest.raises(DemoEngineError, match="no model bundle is shipped with this installation"):
        demo_engine(args(engine="bayesian-unet"), EngineSettings())
    with pytest.raises(DemoEngineError, match="not found"):
        demo_engine(args(engine="bayesian-unet", bundle=tmp_path / "missing"), EngineSettings())
