"""PyTorch at run time for the ``bayesian-unet`` engine: the ``unet`` extra checked, and the device chosen.

Nothing here imports torch at import time: the rest of sarcoscreen works without the extra, and using the engine
without it is an `EngineError` whose message (`MISSING_EXTRA`) names the extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sarcoscreen.inference.engines.base import EngineError

if TYPE_CHECKING:
    import torch

__all__ = ["MISSING_EXTRA", "require_torch", "resolve_device"]

MISSING_EXTRA = ("the bayesian-unet engine needs PyTorch and safetensors, which are not installed: install the "
                 "'unet' extra (pip install 'sarcoscreen[unet]')")


def require_torch() -> None:
    """`EngineError` (`MISSING_EXTRA`) unless torch and safetensors can be imported."""
    try:
        import safetensors  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        raise EngineError(MISSING_EXTRA) from None


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given (checked)."""
    require_torch()
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise EngineError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"device {device} asked for, but CUDA is not available on this machine "
                              "(use device = \"auto\" or \"cpu\")")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise EngineError(f"device {device} asked for, but this machine has {torch.cuda.device_count()} CUDA "
                              "device(s)")
    elif chosen.type != "cpu":
        raise EngineError(f"device {device!r} is not supported: use auto, cpu, cuda or cuda:N")
    return chosen
