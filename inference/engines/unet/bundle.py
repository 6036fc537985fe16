"""Model bundles: save and load the network's weights (safetensors) with their manifest, checked.

A bundle is a folder holding ``manifest.json`` and ``model.safetensors``, or a ``.zip`` / ``.tar.gz`` / ``.tgz``
archive of those two files (at the top of the archive or in one folder inside it). Loading verifies, in order:
the manifest (`Manifest.from_dict`), the SHA-256 of the weights file against the manifest, that the safetensors
file parses, and that its tensors are exactly those of the architecture the manifest describes, with the same
shapes. Any failure raises `BundleError` saying which bundle and what is wrong; nothing is loaded half-way.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from sarcoscreen.inference.engines.unet.manifest import MANIFEST_FILE, BundleError, Manifest
from sarcoscreen.inference.engines.unet.model import BayesianUNet, UNetConfig

__all__ = ["is_archive", "load_bundle", "read_bundle_files", "save_bundle"]

_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def save_bundle(model: BayesianUNet, manifest: Manifest, out: Path | str) -> Manifest:
    """Write `model`'s weights and `manifest` (its checksum filled in) as a folder, or as an archive when `out`
    ends in ``.zip``, ``.tar.gz``, ``.tgz`` or ``.tar``. Returns the manifest as written."""
    out = Path(out)
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    # One metadata entry only: safetensors writes the metadata from a hash map whose order is random per call, so
    # two entries would make the bytes, and with them the checksum and the engine version, differ between two saves
    # of the same weights. The bundle's name is in the manifest.
    weights = save_safetensors_bytes(state, metadata={"format": "sarcoscreen-unet-bundle"})
    manifest = replace(manifest, weights_sha256=hashlib.sha256(weights).hexdigest(),
                       architecture=model.config.to_dict())
    Manifest.from_dict(manifest.to_dict(), str(out))  # never write a bundle that would be refused
    text = manifest.to_json().encode()
    if not is_archive(out):
        out.mkdir(parents=True, exist_ok=True)
        (out / manifest.weights_file).write_bytes(weights)
        (out / MANIFEST_FILE).write_bytes(text)
        return manifest
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    if out.name.lower().endswith(".zip"):
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_FILE, text)
            archive.writestr(manifest.weights_file, weights)
    else:
        mode = "w" if out.name.lower().endswith(".tar") else "w:gz"
        with tarfile.open(partial, mode) as archive:  # type: ignore[call-overload]
            for name, payload in ((MANIFEST_FILE, text), (manifest.weights_file, weights)):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(payload))
    partial.replace(out)
    return manifest


def read_bundle_files(path: Path | str) -> tuple[Manifest, bytes]:
    """The manifest and the raw, checksum-verified weights of a bundle folder or archive."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"model bundle {path} not found")
    if path.is_dir():
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise BundleError(f"model bundle {path} refused: no {MANIFEST_FILE} in the folder")
        manifest = Manifest.read(manifest_path)
        weights_path = path / manifest.weights_file
        if not weights_path.is_file():
            raise BundleError(f"model bundle {path} refused: weights file {manifest.weights_file} is missing")
        weights = weights_path.read_bytes()
    elif is_archive(path):
        manifest, weights = _read_archive(path)
    else:
        raise BundleError(f"model bundle {path} refused: not a folder nor a .zip/.tar.gz archive")
    actual = hashlib.sha256(weights).hexdigest()
    if actual != manifest.weights_sha256:
        raise BundleError(
            f"model bundle {path} refused: checksum mismatch: the manifest gives sha256 {manifest.weights_sha256[:16]}"
            f"... but {manifest.weights_file} has {actual[:16]}...: the weights are corrupted or not the ones the "
            "manifest describes"
        )
    return manifest, weights


def _read_archive(path: Path) -> tuple[Manifest, bytes]:
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = {name.rsplit("/", 1)[-1]: name for name in archive.namelist() if not name.endswith("/")}
                manifest = _manifest_from(members, lambda n: archive.read(members[n]), path)
                return manifest, archive.read(members[manifest.weights_file])
        with tarfile.open(path) as archive:
            files = {m.name.rsplit("/", 1)[-1]: m for m in archive.getmembers() if m.isfile()}

            def read(name: str) -> bytes:
                handle = archive.extractfile(files[name])
                assert handle is not None
                return handle.read()

            manifest = _manifest_from(files, read, path)
            return manifest, read(manifest.weights_file)
    except KeyError as exc:
        raise BundleError(f"model bundle {path} refused: {exc.args[0]} is missing from the archive") from None
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise BundleError(f"model bundle {path} refused: the archive cannot be read ({exc})") from None


def _manifest_from(members: Mapping[str, object], read: Callable[[str], bytes], path: Path) -> Manifest:
    if MANIFEST_FILE not in members:
        raise BundleError(f"model bundle {path} refused: no {MANIFEST_FILE} in the archive")
    try:
        data = json.loads(read(MANIFEST_FILE).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"model bundle {path} refused: cannot read {MANIFEST_FILE}: {exc}") from None
    return Manifest.from_dict(data, str(path))


def load_bundle(path: Path | str, device: torch.device | str = "cpu") -> tuple[BayesianUNet, Manifest]:
    """The network of a bundle, in ``eval()`` mode (batch normalisation frozen, MC dropout active), on
    `device`, with its manifest."""
    manifest, weights = read_bundle_files(path)
    try:
        config = UNetConfig.from_dict(manifest.architecture)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"model bundle {path} refused: bad architecture parameters ({exc})") from None
    try:
        state = load_safetensors_bytes(weights)
    except (SafetensorError, ValueError) as exc:
        raise BundleError(f"model bundle {path} refused: {manifest.weights_file} is not a valid safetensors file "
                          f"({exc})") from None
    model = BayesianUNet(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
            f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}" if unexpected else "",
        ) if part)
        raise BundleError(f"model bundle {path} refused: the weights do not fit the architecture in the manifest "
                          f"({config.levels} levels, {config.base_filters} filters, {config.num_classes} classes): "
                          f"{detail}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise BundleError(
                f"model bundle {path} refused: wrong shape for {name}: the weights have {tuple(state[name].shape)}, "
                f"the architecture in the manifest ({config.levels} levels, {config.base_filters} filters, "
                f"{config.num_classes} classes) needs {tuple(tensor.shape)}"
            )
        if state[name].dtype != tensor.dtype:
            state[name] = state[name].to(tensor.dtype)
    model.load_state_dict(state)
    model.eval()
    return model.to(device), manifest

