"""What a model bundle is, in words: the one labelling line every result carries, and a description for people.

Both read only the manifest (`manifest.Manifest`, `manifest.TrainingData`): plain Python, no torch.

* `labelling_line` - one line for the engine's notes (``Segmentation.notes``), which measurement copies into the
  report and so into ``measurements.json``, the TID 1500 SR (one engine-note text item each), the key image /
  overlay, the terminal table of ``analyze`` and the node's audit trail: which model, trained on what (how many
  subjects, from where) and for what use, as the bundle's manifest states it. Nothing is added that the
  manifest does not say (the manifest has no "public" flag: the provenance says where the data came from).
* `describe_manifest` - the manifest for a person (``sarcoscreen bundle``): name, version, weights, structures,
  input, inference defaults, training data with provenance, licences and intended use, validation summary.
"""

from __future__ import annotations

import re
from pathlib import Path

from sarcoscreen.inference.engines.unet.manifest import SYNTHETIC_WARNING, Manifest

__all__ = ["describe_manifest", "labelling_line", "short_provenance"]

_SHORT_SOURCE = 120
_REFERENCE = re.compile(r"\b(?:DOI:?\s*10\.\S+|10\.\d{4,}/\S+|https?://\S+|(?:www\.)?[\w-]+(?:\.[\w-]+)*\.(?:com|org|io|"
                        r"net|edu|gov)/\S+)", re.IGNORECASE)


def _short_line(line: str) -> str:
    """One provenance line in a few words: its text up to the first comma, semicolon or parenthesis outside
    parentheses, followed by the DOI or URL the line gives (if the head lacks it), at most 120 characters."""
    depth, cut = 0, len(line)
    for i, char in enumerate(line):
        if char == "(" and depth == 0 and i > 0:
            cut = i
            break
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char in ",;" and depth == 0:
            cut = i
            break
    head = line[:cut].strip()
    reference = _REFERENCE.search(line)
    if reference is not None and reference.group(0).rstrip(").,;") not in head:
        head = f"{head}, {reference.group(0).rstrip(').,;')}" if head else reference.group(0).rstrip(").,;")
    return head if len(head) <= _SHORT_SOURCE else head[:_SHORT_SOURCE - 3].rstrip() + "..."


def short_provenance(manifest: Manifest) -> str:
    """The training data's sources in a few words: each ``provenance`` line (a line is "data set, version, DOI or
    URL") shortened by `_short_line`; without provenance the manifest's short ``sources`` names; ``""`` when
    neither is given."""
    data = manifest.training_data
    names = [_short_line(line) for line in data.provenance] if data.provenance else list(data.sources)
    return "; ".join(name for name in names if name)


def labelling_line(manifest: Manifest) -> str | None:
    """``model NAME VERSION: trained on data from N subjects (SOURCES); intended use: USE`` - the parts the manifest
    states (``subjects``, ``provenance``, else ``sources``, ``intended_use``; the licences are shown by
    `describe_manifest`, too long for every result); ``None`` when it states none of subjects, provenance and
    intended use (older bundles: the engine's other notes still name the bundle)."""
    data = manifest.training_data
    if not (data.subjects or data.provenance or data.intended_use):
        return None
    parts = []
    sources = short_provenance(manifest)
    if data.subjects or data.provenance:
        kind = "synthetic data" if data.synthetic else "data"
        subjects = (f" from {data.subjects} subject{'s' if data.subjects != 1 else ''}" if data.subjects else "")
        parts.append(f"trained on {kind}{subjects}" + (f" ({sources})" if sources else ""))
    if data.intended_use:
        parts.append(f"intended use: {data.intended_use}")
    return f"model {manifest.name} {manifest.version}: " + "; ".join(parts)


def describe_manifest(manifest: Manifest, path: Path | str | None = None) -> str:
    """A bundle's manifest as lines of text for a person; `path` is where it was read from (shown first)."""
    data = manifest.training_data
    lines = []
    if path is not None:
        lines.append(f"bundle        {path}")
    lines += [
        f"model         {manifest.name} {manifest.version}" + (f" ({manifest.created})" if manifest.created else ""),
    ]
    if manifest.description:
        lines.append(f"description   {manifest.description}")
    arch, spec = manifest.architecture, manifest.input
    lines += [
        f"weights       {manifest.weights_file}, sha256 {manifest.weights_sha256} (verified)",
        f"network       {arch.get('name')}: {arch.get('levels')} levels, {arch.get('base_filters')} filters, "
        f"dropout {arch.get('dropout')}, {manifest.num_classes} output classes",
        f"input         {spec.size[0]} x {spec.size[1]} at {spec.pixel_spacing_mm[0]:g} x {spec.pixel_spacing_mm[1]:g} "
        f"mm, HU window {spec.hu_window[0]:g}..{spec.hu_window[1]:g}",
        f"inference     {manifest.mc_samples} MC samples, uncertainty {manifest.uncertainty_measure}"
        + ("" if manifest.uncertainty_threshold is None else f", QA threshold {manifest.uncertainty_threshold:.4g}"),
        f"structures    {manifest.num_classes - 1}: {', '.join(e.key for e in manifest.labels[1:])}",
        "",
        "training data",
        f"  description   {data.description or '(not stated)'}",
        f"  synthetic     {'yes' if data.synthetic else 'no'}",
        f"  subjects      {data.subjects or '(not stated)'}",
        f"  cases         {data.cases} training, {data.validation_cases} validation",
    ]
    lines += _listed("provenance", data.provenance)
    lines += _listed("licences", data.licences)
    if data.sources:
        lines.append(f"  sources       {', '.join(data.sources)}")
    if data.label_mapping:
        lines.append(f"  label mapping {data.label_mapping}")
    lines.append(f"  intended use  {data.intended_use or '(not stated)'}")
    dice = manifest.training.get("validation", {}).get("dice_mc") if isinstance(manifest.training, dict) else None
    if isinstance(dice, dict) and dice:
        values = [float(v) for v in dice.values() if isinstance(v, int | float)]
        if values:
            lines += ["", f"validation    mean Dice {sum(values) / len(values):.3f} over {len(values)} structures "
                          "(the bundle's own validation cases; not a clinical validation)"]
    label = labelling_line(manifest)
    if label or data.synthetic:
        lines.append("")
    if label:
        lines.append(f"every result says: {label}")
    if data.synthetic:
        lines.append(f"WARNING: {SYNTHETIC_WARNING}")
    return "\n".join(lines)


def _listed(title: str, values: tuple[str, ...]) -> list[str]:
    if not values:
        return [f"  {title:13s} (not stated)"]
    return [f"  {title if i == 0 else '':13s} {value}" for i, value in enumerate(values)]
