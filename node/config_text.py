"""The configuration as TOML text: a commented example and the effective settings (secrets masked).

Both are generated from `Settings` itself, so the example and ``config show`` can never disagree with what the
loader accepts.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sarcoscreen.node.config import ENV_PREFIX, DestinationSettings, Settings

_LIST_SECTIONS = ("destinations",)
"""Top-level lists of tables, written as [[name]] after the sections."""

__all__ = ["effective_toml", "example_toml"]

_SECRET_KEYS = {("database", "url")}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Enum):
        return json.dumps(str(value.value))
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _mask(section: str, key: str, value: Any) -> Any:
    if (section, key) in _SECRET_KEYS and isinstance(value, str) and value:
        from sarcoscreen.db.session import mask_url

        return mask_url(value)
    return value


def example_toml() -> str:
    """A complete configuration file with every key at its default, each explained by a comment."""
    lines = [
        "# sarcoscreen configuration (TOML). Every key is optional; shown here at its default.",
        f"# Any key can be overridden by an environment variable {ENV_PREFIX}<SECTION>__<KEY>,",
        f"# e.g. {ENV_PREFIX}DATABASE__URL. Relative paths are relative to this file's folder.",
    ]
    defaults = Settings()
    for section_name, section_field in Settings.model_fields.items():
        if section_name in _LIST_SECTIONS:
            continue
        section: BaseModel = getattr(defaults, section_name)
        lines += ["", f"[{section_name}]"]
        if section_field.annotation is not None and section_field.annotation.__doc__:
            lines.append(f"# {section_field.annotation.__doc__.strip().splitlines()[0]}")
        for key, field in type(section).model_fields.items():
            if field.description:
                lines.append(f"# {field.description}")
            value = getattr(section, key)
            if value is None:
                lines.append(f'# {key} = ""')
            else:
                lines.append(f"{key} = {_toml_value(value)}")
    lines += _destinations_example()
    return "\n".join(lines) + "\n"


def _destinations_example() -> list[str]:
    """The [[destinations]] list, commented out (it is empty by default), with each key's meaning."""
    field = Settings.model_fields["destinations"]
    lines = ["", f"# {field.description}", "# One table per destination; every output is sent to each of them.",
             "# [[destinations]]"]
    examples = {"name": '"pacs"', "ae_title": '"PACS"', "host": '"10.0.0.5"', "port": "104"}
    for key, item in DestinationSettings.model_fields.items():
        if item.description:
            lines.append(f"#   {item.description}")
        default = item.get_default() if key not in examples else None
        if key in examples:
            lines.append(f"# {key} = {examples[key]}")
        elif default is None:
            lines.append(f'# {key} = ""')
        else:
            lines.append(f"# {key} = {_toml_value(default)}")
    return lines


def effective_toml(settings: Settings) -> str:
    """The settings in force, as TOML; resolved defaults are shown as comments, secrets are masked."""
    lines = ["# effective sarcoscreen configuration"]
    for section_name in Settings.model_fields:
        if section_name in _LIST_SECTIONS:
            continue
        section: BaseModel = getattr(settings, section_name)
        lines += ["", f"[{section_name}]"]
        for key in type(section).model_fields:
            value = _mask(section_name, key, getattr(section, key))
            if value is None or value == "":
                lines.append(f"# {key} = (not set)")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
    for destination in settings.destinations:
        lines += ["", "[[destinations]]"]
        for key in DestinationSettings.model_fields:
            value = getattr(destination, key)
            lines.append(f"# {key} = (not set)" if value is None else f"{key} = {_toml_value(value)}")
    lines += [
        "",
        "# resolved",
        f"# database url  = {_mask('database', 'url', settings.database_url)}",
        f"# spool         = {settings.storage.spool}",
        f"# quarantine    = {settings.storage.quarantine}",
        f"# outputs       = {settings.storage.outputs}",
    ]
    return "\n".join(lines) + "\n"
