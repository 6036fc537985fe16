"""The ``phantom`` command's options as the simulators' parameters.

``sarcoscreen phantom`` writes the procedural phantom (`PhantomParameters`); ``phantom --anatomy DIR`` the CT
simulated from a real label map (`SimulationParameters`). The parser leaves the options without a default (None)
because the two have different defaults for some (sex, height, slice spacing); they get theirs here. An option
of the one given to the other is found by `anatomy_only_options` and `phantom_only_options`.
"""

from __future__ import annotations

import argparse
from typing import Any

from sarcoscreen.inference.phantom import PhantomParameters
from sarcoscreen.inference.phantom.realistic import Protocol, SimulationParameters

__all__ = [
    "ANATOMY_DEFAULTS",
    "PHANTOM_DEFAULTS",
    "anatomy_only_options",
    "params_from_args",
    "phantom_only_options",
    "simulation_params_from_args",
]

PHANTOM_DEFAULTS: dict[str, Any] = {
    "fov": "hip", "sex": "F", "height": 1.58, "muscle_scale": 1.0, "fat_mm": 15.0, "slice_mm": 1.0, "matrix": 512,
    "noise_hu": 12.0, "fatty_infiltration": 0.0, "table": True, "offset_mm": (0.0, 0.0), "legs_touching": False,
    "arms": False, "patient_position": "HFS", "age": 72,
}
"""The procedural phantom's defaults of the options the parser leaves unset (None)."""
ANATOMY_DEFAULTS: dict[str, Any] = {
    "sex": "M", "height": 1.75, "slice_mm": Protocol.slice_mm, "crop": "none", "pixel_mm": Protocol.pixel_mm,
    "thickness_mm": Protocol.thickness_mm, "noise_scale": Protocol.noise_scale, "infiltration_scale": 1.0,
    "randomise": False,
}
"""``--anatomy``'s defaults: those of `SimulationParameters` and `Protocol` (the annotated cases are men)."""
_SHARED = frozenset(PHANTOM_DEFAULTS) & frozenset(ANATOMY_DEFAULTS)
_FLAGS = {"table": "--no-table", "height": "--height"}


def _value(args: argparse.Namespace, name: str, defaults: dict[str, Any]) -> Any:
    value = getattr(args, name, None)
    return defaults[name] if value is None else value


def _given(args: argparse.Namespace, names: frozenset[str] | set[str]) -> list[str]:
    """The options among `names` given on the command line (those the parser leaves None when not given)."""
    return [_FLAGS.get(n, "--" + n.replace("_", "-")) for n in sorted(names) if getattr(args, n, None) is not None]


def anatomy_only_options(args: argparse.Namespace) -> list[str]:
    """The options of ``--anatomy`` only that were given (refused without it), e.g. ``["--crop"]``."""
    return _given(args, set(ANATOMY_DEFAULTS) - _SHARED)


def phantom_only_options(args: argparse.Namespace) -> list[str]:
    """The options of the procedural phantom only that were given (refused with ``--anatomy``)."""
    return _given(args, set(PHANTOM_DEFAULTS) - _SHARED)


def params_from_args(args: argparse.Namespace) -> PhantomParameters:
    """`PhantomParameters` from the ``phantom`` sub-command's options (`PhantomParameterError` when invalid)."""
    def v(name: str) -> Any:
        return _value(args, name, PHANTOM_DEFAULTS)

    return PhantomParameters(
        fov=v("fov"), sex=v("sex"), height_m=v("height"), muscle_scale=v("muscle_scale"), fat_mm=v("fat_mm"),
        slice_mm=v("slice_mm"), matrix=v("matrix"), noise_hu=v("noise_hu"), seed=args.seed,
        fatty_infiltration=v("fatty_infiltration"),
        metal_hip=getattr(args, "metal_hip", "none"),
        contrast=getattr(args, "contrast", False),
        table=v("table"),
        offset_mm=tuple(v("offset_mm")),
        legs_touching=v("legs_touching"),
        arms=v("arms"),
        patient_position=v("patient_position"),
        age_years=v("age"),
    )


def simulation_params_from_args(args: argparse.Namespace) -> SimulationParameters:
    """`SimulationParameters` from ``phantom --anatomy``'s options (`PhantomParameterError` when invalid)."""
    def v(name: str) -> Any:
        return _value(args, name, ANATOMY_DEFAULTS)

    protocol = Protocol(pixel_mm=v("pixel_mm"), slice_mm=v("slice_mm"), thickness_mm=v("thickness_mm"),
                        noise_scale=v("noise_scale"), contrast=bool(getattr(args, "contrast", False)))
    return SimulationParameters(protocol=protocol, seed=args.seed, sex=v("sex"), height_m=v("height"),
                                metal_hip=getattr(args, "metal_hip", "none"), crop=v("crop"),
                                infiltration_scale=v("infiltration_scale"), randomise=bool(v("randomise")))
