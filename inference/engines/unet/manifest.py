"""The model bundle's JSON manifest: what the weights are, how to feed them and what they were trained on.

Plain Python (no torch), so that a bundle can be described and checked on a machine without the ``unet`` extra.
A bundle is a folder (or a ``.zip`` / ``.tar.gz`` archive of one) holding ``manifest.json`` and the weights
``model.safetensors``; see docs/unet-engine.md for an example. `Manifest.from_dict` refuses anything that
sarcoscreen cannot use safely, with a message that says what is wrong:

* an unknown format or a newer format version;
* a label table that is not background (index 0, label 0) followed by catalogue structures whose label values
  are the catalogue's own (label values are persistent; a bundle trained with other values is refused, never
  silently renumbered);
* architecture, input and inference parameters out of range;
* a weights checksum that is not a SHA-256 hex digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sarcoscreen.inference.catalogue import CATALOGUE, Structure, UnknownStructureError
from sarcoscreen.inference.engines.base import UNCERTAINTY_MEASURES, EngineError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "SYNTHETIC_WARNING",
    "UNCERTAINTY_MEASURES",
    "WEIGHTS_FILE",
    "BundleError",
    "InputSpec",
    "LabelEntry",
    "Manifest",
    "TrainingData",
]

FORMAT = "sarcoscreen-unet-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.safetensors"
SYNTHETIC_WARNING = ("this model bundle was trained on SYNTHETIC data (digital phantoms): it is for testing the "
                     "software only and must never be used on patients")


class BundleError(EngineError):
    """A model bundle that cannot be used; the message says which bundle and why."""


@dataclass(frozen=True)
class LabelEntry:
    """One output channel of the network: channel ``index`` is catalogue structure ``key`` (label ``label``)."""

    index: int
    key: str
    label: int


@dataclass(frozen=True)
class InputSpec:
    """How slices are presented to the network."""

    size: tuple[int, int]
    """Input rows and columns."""
    pixel_spacing_mm: tuple[float, float]
    """Row and column spacing of the input grid: slices are resampled to it, then cropped or padded (air) to
    ``size`` around the body's centre."""
    hu_window: tuple[float, float]
    """HU are clipped to this window ..."""
    mean: float
    std: float
    """... then normalised as ``(clip(hu) - mean) / std``."""


@dataclass(frozen=True)
class TrainingData:
    """What the weights were trained on (shown to users; ``synthetic`` makes the engine warn)."""

    description: str
    synthetic: bool
    cases: int = 0
    validation_cases: int = 0
    sources: tuple[str, ...] = ()
    label_mapping: str | None = None
    subjects: int = 0
    """Distinct people whose anatomy or CT the training data came from (0: not stated)."""
    provenance: tuple[str, ...] = ()
    """Where the training data came from, one line per source (data set, version, DOI or URL)."""
    licences: tuple[str, ...] = ()
    """The licence of every source, one line per source."""
    intended_use: str = ""
    """E.g. ``research; not a medical device``: carried into the engine's notes and so into every result."""


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``."""

    name: str
    version: str
    architecture: dict[str, Any]
    labels: tuple[LabelEntry, ...]
    input: InputSpec
    training_data: TrainingData
    weights_sha256: str
    mc_samples: int = 10
    uncertainty_measure: str = "variance"
    uncertainty_threshold: float | None = None
    """Suggested QA threshold for structure-wise uncertainty (``uncertainty_measure``), e.g. from validation."""
    description: str = ""
    created: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    """Free-form training record (epochs, validation Dice per structure, software versions, ...)."""
    weights_file: str = WEIGHTS_FILE

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def label_values(self) -> list[int]:
        """Catalogue label value of every output channel (index 0 = background = 0)."""
        return [entry.label for entry in self.labels]

    def structures(self) -> tuple[Structure, ...]:
        """The catalogue structures the network produces, in label order."""
        return tuple(sorted((CATALOGUE.by_label(e.label) for e in self.labels[1:]), key=lambda s: s.label))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "created": self.created,
            "architecture": dict(self.architecture),
            "labels": [asdict(e) for e in self.labels],
            "input": {
                "size": list(self.input.size),
                "pixel_spacing_mm": list(self.input.pixel_spacing_mm),
                "hu_window": list(self.input.hu_window),
                "normalisation": {"mean": self.input.mean, "std": self.input.std},
            },
            "inference": {
                "mc_samples": self.mc_samples,
                "uncertainty_measure": self.uncertainty_measure,
                "uncertainty_threshold": self.uncertainty_threshold,
            },
            "training_data": {**asdict(self.training_data), "sources": list(self.training_data.sources),
                              "provenance": list(self.training_data.provenance),
                              "licences": list(self.training_data.licences)},
            "training": self.training,
            "weights": {"file": self.weights_file, "format": "safetensors", "sha256": self.weights_sha256},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> Manifest:
        """Parse and check a manifest; `BundleError` naming `source` and the problem when it is unusable."""
        try:
            return _parse(data)
        except BundleError as exc:
            raise BundleError(f"model bundle {source} refused: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise BundleError(f"model bundle {source} refused: malformed manifest ({what})") from None

    @classmethod
    def read(cls, path: Path | str) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"model bundle {path.parent} refused: cannot read {path.name}: {exc}") from None
        return cls.from_dict(data, str(path.parent))


def _pair(value: Any, name: str, kind: type) -> tuple[Any, Any]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise BundleError(f"{name} must be a list of two numbers, got {value!r}")
    return kind(value[0]), kind(value[1])


def _parse_labels(raw: Any) -> tuple[LabelEntry, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise BundleError("the label table must list background and at least one structure")
    entries = []
    for position, item in enumerate(raw):
        index, key, label = int(item["index"]), str(item["key"]), int(item["label"])
        if index != position:
            raise BundleError(f"label table entry {position} has index {index}; indices must run 0, 1, 2, ...")
        if position == 0:
            if key != "background" or label != 0:
                raise BundleError(f"channel 0 must be background (label 0), got {key!r} (label {label})")
        else:
            try:
                structure = CATALOGUE.by_key(key)
            except UnknownStructureError:
                raise BundleError(f"channel {index} is {key!r}, which is not a structure of the catalogue") from None
            if structure.label != label:
                raise BundleError(f"channel {index} ({key}) has label value {label}, but the catalogue's label of "
                                  f"{key} is {structure.label}; label values are persistent")
        entries.append(LabelEntry(index, key, label))
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise BundleError("the label table lists a structure twice")
    return tuple(entries)


def _parse(data: Any) -> Manifest:
    if not isinstance(data, dict):
        raise BundleError("the manifest is not a JSON object")
    if data.get("format") != FORMAT:
        raise BundleError(f"not a sarcoscreen U-Net bundle (format {data.get('format')!r}, expected {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise BundleError(f"format version {version!r} is not supported (this sarcoscreen reads up to "
                          f"{FORMAT_VERSION}); update sarcoscreen")
    labels = _parse_labels(data["labels"])
    architecture = dict(data["architecture"])
    if architecture.get("name") != "bayesian-unet-2d":
        raise BundleError(f"architecture {architecture.get('name')!r} is not bayesian-unet-2d")
    if int(architecture.get("num_classes", -1)) != len(labels):
        raise BundleError(f"the architecture has {architecture.get('num_classes')} output classes but the label "
                          f"table {len(labels)}")
    levels = int(architecture.get("levels", 5))
    if not 2 <= levels <= 7:
        raise BundleError(f"levels {levels} out of range 2..7")
    raw_input = data["input"]
    size = _pair(raw_input["size"], "input size", int)
    divisor = 2 ** (levels - 1)
    if any(n <= 0 or n % divisor for n in size):
        raise BundleError(f"input size {list(size)} must be positive multiples of {divisor} for {levels} levels")
    spacing = _pair(raw_input["pixel_spacing_mm"], "input pixel spacing", float)
    if any(not 0.05 <= s <= 50.0 for s in spacing):
        raise BundleError(f"input pixel spacing {list(spacing)} mm out of range")
    window = _pair(raw_input["hu_window"], "HU window", float)
    if not window[0] < window[1]:
        raise BundleError(f"HU window {list(window)} must be (low, high) with low < high")
    norm = raw_input.get("normalisation", {})
    mean, std = float(norm.get("mean", 0.0)), float(norm.get("std", 1.0))
    if not std > 0:
        raise BundleError(f"normalisation std {std} must be positive")
    inference = data.get("inference", {})
    mc_samples = int(inference.get("mc_samples", 10))
    if not 1 <= mc_samples <= 1000:
        raise BundleError(f"mc_samples {mc_samples} out of range 1..1000")
    measure = str(inference.get("uncertainty_measure", "variance"))
    if measure not in UNCERTAINTY_MEASURES:
        raise BundleError(f"uncertainty measure {measure!r} is not one of {', '.join(UNCERTAINTY_MEASURES)}")
    threshold = inference.get("uncertainty_threshold")
    raw_training = data["training_data"]
    if not isinstance(raw_training.get("synthetic"), bool):
        raise BundleError("training_data.synthetic must be true or false: say whether the training data were "
                          "synthetic")
    training_data = TrainingData(
        description=str(raw_training.get("description", "")), synthetic=raw_training["synthetic"],
        cases=int(raw_training.get("cases", 0)), validation_cases=int(raw_training.get("validation_cases", 0)),
        sources=tuple(str(s) for s in raw_training.get("sources", ())),
        label_mapping=raw_training.get("label_mapping"),
        subjects=int(raw_training.get("subjects", 0)),
        provenance=tuple(str(s) for s in raw_training.get("provenance", ())),
        licences=tuple(str(s) for s in raw_training.get("licences", ())),
        intended_use=str(raw_training.get("intended_use", "")),
    )
    weights = data["weights"]
    sha = str(weights["sha256"]).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise BundleError(f"weights sha256 {weights['sha256']!r} is not a SHA-256 hex digest")
    weights_file = str(weights.get("file", WEIGHTS_FILE))
    if "/" in weights_file or "\\" in weights_file or weights_file.startswith("."):
        raise BundleError(f"weights file name {weights_file!r} must be a plain file name inside the bundle")
    return Manifest(
        name=str(data.get("name", "unnamed")), version=str(data.get("version", "0")),
        description=str(data.get("description", "")), created=str(data.get("created", "")),
        architecture=architecture, labels=labels,
        input=InputSpec(size, spacing, window, mean, std), training_data=training_data, weights_sha256=sha,
        mc_samples=mc_samples, uncertainty_measure=measure,
        uncertainty_threshold=None if threshold is None else float(threshold),
        training=dict(data.get("training", {})), weights_file=weights_file,
    )
