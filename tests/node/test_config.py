"""The settings object: defaults, file, environment and command-line precedence, validation messages, and the
node's sections: [routing], [queue], [worker], [delivery] and the [[destinations]] list."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sarcoscreen.inference.density import DensityKind
from sarcoscreen.inference.sides import SideRule
from sarcoscreen.node.config import ConfigError, load_settings
from sarcoscreen.node.config_text import effective_toml, example_toml
from sarcoscreen.node.series_watcher import routing_rules_from


def test_embedded_defaults_use_sqlite_and_local_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database_url == f"sqlite:///{tmp_path / 'sarcoscreen-data' / 'sarcoscreen.db'}"
    assert settings.storage.spool == Path("sarcoscreen-data/spool")
    assert settings.engine.name == "threshold"
    assert (settings.engine.muscle_hu_min, settings.engine.muscle_hu_max) == (-29.0, 150.0)
    assert settings.measurement.calibration_file is None


def test_file_then_environment_then_command_line(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "node.toml"
    config.parent.mkdir()
    config.write_text(
        '[storage]\ndata_dir = "data"\n[measurement]\ndensity = "hu_linear"\nside_rule = "min"\n'
        '[engine]\nmuscle_hu_min = -30\n',
        encoding="utf-8",
    )
    settings = load_settings(
        config,
        environ={"SARCOSCREEN_MEASUREMENT__SIDE_RULE": "left", "SARCOSCREEN_ENGINE__MUSCLE_HU_MAX": "120"},
        overrides={"engine": {"muscle_hu_max": 140}},
    )
    # Relative paths in the file are relative to the file's folder.
    assert settings.storage.data_dir == tmp_path / "etc" / "data"
    assert settings.measurement.density is DensityKind.HU_LINEAR
    assert settings.measurement.side_rule is SideRule.LEFT  # environment beats file
    assert settings.engine.muscle_hu_min == -30
    assert settings.engine.muscle_hu_max == 140  # command line beats environment


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text('[uids]\nroot = "1.2.826.0.1.3680043.10.543"\n', encoding="utf-8")
    settings = load_settings(environ={"SARCOSCREEN_CONFIG": str(config)})
    assert settings.uids.root == "1.2.826.0.1.3680043.10.543"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SARCOSCREEN_ENGINE__NAME": "magic"}, "engine.name: unknown engine 'magic'"),
        ({"SARCOSCREEN_STORAGE__MIN_FREE_MB": "-1"}, "storage.min_free_mb"),
        ({"SARCOSCREEN_ENGINE__MUSCLE_HU_MIN": "200"}, "muscle_hu_min (200.0) must be below muscle_hu_max"),
        ({"SARCOSCREEN_MEASUREMENT__SIDE_RULE": "both"}, "measurement.side_rule"),
        ({"SARCOSCREEN_MEASUREMENT__DENSITY_G_PER_CM3": "10.4"}, "measurement.density_g_per_cm3"),
        ({"SARCOSCREEN_UIDS__ROOT": "1.02.3"}, "uids.root: must be a dotted-decimal UID prefix"),
        ({"SARCOSCREEN_DATABASE__URL": "mysql://x@y/z"}, "database.url: must be a sqlite:/// or postgresql://"),
        ({"SARCOSCREEN_ENGINE__DEVCE": "cpu"}, "engine.devce: unknown key"),
        ({"SARCOSCREEN_LOGGING__LEVEL": "loud"}, "logging.level"),
    ],
)
def test_invalid_values_name_the_key_and_the_reason(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    message = str(caught.value)
    assert expected in message
    assert "environment variable SARCOSCREEN_" in message


def test_bayesian_unet_without_bundle_path_needs_a_shipped_bundle(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, engine.bundle_path means the bundle shipped in the package (tests/inference/test_unet_shipped.py); an
    installation without one (the lookup pointed at an empty folder here) refuses the setting with the reason."""
    from sarcoscreen.inference.engines.unet import shipped_bundle

    monkeypatch.setattr(shipped_bundle, "shipped_folder", lambda: tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SARCOSCREEN_ENGINE__NAME": "bayesian-unet"})
    message = str(caught.value)
    assert "engine: bundle_path is required for the bayesian-unet engine here: no model bundle is shipped" in message
    assert "environment variable SARCOSCREEN_ENGINE__NAME" in message


def test_every_bad_key_is_reported_at_once_with_its_origin(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[engine]\nname = "nope"\n[storage]\nmin_free_mb = "lots"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert "engine.name" in message
    assert "storage.min_free_mb" in message
    assert f"file {config}" in message


def test_environment_variable_without_section_is_rejected() -> None:
    with pytest.raises(ConfigError, match="SARCOSCREEN_<SECTION>__<KEY>"):
        load_settings(environ={"SARCOSCREEN_PORT": "104"})


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[engine\nname=1", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, environ={})


def test_example_file_is_valid_and_round_trips(tmp_path: Path) -> None:
    text = example_toml()
    parsed = tomllib.loads(text)
    assert set(parsed) == {"network", "database", "storage", "engine", "measurement", "uids", "outputs",
                           "logging", "routing", "queue", "worker", "delivery", "web"}
    example = tmp_path / "example.toml"
    example.write_text(text, encoding="utf-8")
    settings = load_settings(example, environ={})
    assert settings.engine == load_settings(environ={}).engine
    assert "# Segmentation engine: threshold | bayesian-unet." in text


def test_effective_configuration_masks_the_database_password() -> None:
    settings = load_settings(
        environ={"SARCOSCREEN_DATABASE__URL": "postgresql+psycopg://node:s3cret@db.example:5432/sarcoscreen"}
    )
    text = effective_toml(settings)
    assert "s3cret" not in text
    assert "node:***@db.example:5432/sarcoscreen" in text
    tomllib.loads(text)


DESTINATIONS = """
[[destinations]]
name = "pacs"
ae_title = "PACS"
host = "10.0.0.5"
port = 104

[[destinations]]
name = "research"
ae_title = "ORTHANC"
host = "orthanc"
port = 4242
tls = true
tls_ca_certificates = "certs/ca.pem"
"""


def test_destinations_from_the_file_with_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[worker]\nconcurrency = 2\n[routing]\nmin_slices = 40\n" + DESTINATIONS, encoding="utf-8")
    settings = load_settings(path, environ={})
    assert [(d.name, d.ae_title, d.host, d.port, d.tls) for d in settings.destinations] == [
        ("pacs", "PACS", "10.0.0.5", 104, False), ("research", "ORTHANC", "orthanc", 4242, True)]
    assert settings.destinations[1].tls_ca_certificates == tmp_path / "certs" / "ca.pem"
    assert settings.worker.concurrency == 2
    assert routing_rules_from(settings).min_slices == 40
    shown = effective_toml(settings)
    assert shown.count("[[destinations]]") == 2
    assert tomllib.loads(shown)["destinations"][1]["port"] == 4242


def test_destinations_from_the_environment() -> None:
    environ = {"SARCOSCREEN_DESTINATIONS": '[{name = "pacs", ae_title = "PACS", host = "pacs", port = 104}]'}
    settings = load_settings(environ=environ)
    assert [d.name for d in settings.destinations] == ["pacs"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[destinations]]\nname = "a"\nae_title = "A"\nhost = "h"\nport = 70000\n',
         "destinations.0.port: Input should be less than or equal to 65535"),
        ('[[destinations]]\nname = "a"\nae_title = "A"\nhost = "h"\nport = 1\n'
         '[[destinations]]\nname = "a"\nae_title = "B"\nhost = "h"\nport = 2\n',
         "destination names must be unique: a repeated"),
        ('[[destinations]]\nname = "a"\nae_title = "A"\nhost = "h"\nport = 1\ntls_certificate = "c.pem"\n',
         "tls_certificate and tls_private_key must be set together"),
        ('[[destinations]]\nname = "a b"\nae_title = "A"\nhost = "h"\nport = 1\n',
         "destinations.0.name: must be 1-64 letters"),
        ('[[destinations]]\nname = "a"\nhost = "h"\nport = 1\n', "destinations.0.ae_title: Field required"),
        ('[[destinations]]\nname = "a"\nae_title = "ABCDEFGHIJKLMNOPQ"\nhost = "h"\nport = 1\n',
         "destinations.0.ae_title: the AE title has 17 characters, more than 16"),
        ('[network]\nae_title = "SARCO\\\\SCREEN"\n', "network.ae_title: the AE title contains a backslash"),
        ('[network]\nae_title = "    "\n', "network.ae_title: the AE title is empty or spaces only"),
        ('[network]\nallowed_calling = ["CT1", "CT\\tTWO@10.0.0.7"]\n',
         "entry 'CT\\tTWO@10.0.0.7': the AE title contains a control character"),
        ("[queue]\nlease_s = 10\nheartbeat_s = 10\n", "heartbeat_s (10) must be below lease_s (10)"),
        ("[worker]\nconcurrency = 0\n", "worker.concurrency: Input should be greater than or equal to 1"),
    ],
)
def test_bad_node_settings_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert expected in str(error.value)
    assert f"[from file {path}]" in str(error.value)


def test_the_example_documents_destinations_and_stays_valid() -> None:
    text = example_toml()
    assert "# [[destinations]]" in text
    assert "# name = \"pacs\"" in text
    assert tomllib.loads(text)["queue"]["lease_s"] == 300.0


def test_ae_titles_are_checked_once_and_kept_without_padding(tmp_path: Path) -> None:
    """Sixteen characters are allowed; the spaces around an AE title are not significant (PS3.5 Table 6.2-1)."""
    path = tmp_path / "node.toml"
    path.write_text('[network]\nae_title = " ABCDEFGHIJKLMNOP "\nallowed_calling = [" CT1 ", "CT2@10.0.0.7"]\n'
                    + DESTINATIONS.replace('"PACS"', '"PACS  "'), encoding="utf-8")
    settings = load_settings(path, environ={})
    assert settings.network.ae_title == "ABCDEFGHIJKLMNOP"
    assert settings.network.allowed_calling == ["CT1", "CT2@10.0.0.7"]
    assert settings.destinations[0].ae_title == "PACS"
