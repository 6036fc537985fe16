"""The node's configuration sections: [routing], [queue], [worker], [delivery] and the [[destinations]] list."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sarcoscreen.node.config import ConfigError, load_settings
from sarcoscreen.node.config_text import effective_toml, example_toml
from sarcoscreen.node.series_watcher import routing_rules_from

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
