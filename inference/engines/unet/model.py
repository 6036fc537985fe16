"""The network: the 2-D Bayesian U-Net of Hiasa et al. (IEEE TMI 39(4), 2020).

Layout (after the authors' public PyTorch/Chainer implementation, re-written here):

* ``levels`` resolution levels (default 5); level ``i`` has ``base_filters * 2**i`` filters (default 32, 64,
  128, 256, 512);
* every block is two 3x3 convolutions (padding 1), each followed by batch normalisation and ReLU;
* down: 2x2 max pooling before each encoder block below the top; up: a 2x2 transposed convolution (stride 2)
  with batch normalisation and ReLU, concatenated with the encoder block of the same level, then a block;
* dropout (p = 0.5 by default) after **every** encoder and decoder block. The dropout layers are
  `MCDropout`: they stay active in ``eval()`` mode, so that at inference batch normalisation uses its running
  statistics while dropout samples a sub-network for each forward pass (Monte-Carlo dropout, Gal &
  Ghahramani 2016);
* a 1x1 convolution to one logit per class; softmax over the classes is applied by the caller.

The input height and width must be multiples of ``2**(levels - 1)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["BayesianUNet", "MCDropout", "UNetConfig", "set_mc_dropout"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture parameters; the defaults are those of the reference study."""

    num_classes: int
    levels: int = 5
    base_filters: int = 32
    in_channels: int = 1
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if not 2 <= self.levels <= 7:
            raise ValueError(f"levels must be 2..7, got {self.levels}")
        if not 1 <= self.base_filters <= 256:
            raise ValueError(f"base_filters must be 1..256, got {self.base_filters}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {self.in_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def divisor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (self.levels - 1)

    def filters(self, level: int) -> int:
        return self.base_filters * 2**level

    def to_dict(self) -> dict[str, Any]:
        return {"name": "bayesian-unet-2d", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        fields = {k: data[k] for k in ("num_classes", "levels", "base_filters", "in_channels", "dropout") if k in data}
        return cls(**fields)


class MCDropout(nn.Module):
    """Channel-independent element-wise dropout that is active whenever ``active`` is set, whatever the module's
    training mode (Monte-Carlo dropout). `set_mc_dropout` switches it off for a deterministic forward pass."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.active = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active or self.p == 0.0:
            return x
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}, active={self.active}"


def set_mc_dropout(model: nn.Module, active: bool) -> None:
    """Switch every `MCDropout` of `model` on (Monte-Carlo sampling) or off (the mean-field approximation)."""
    for module in model.modules():
        if isinstance(module, MCDropout):
            module.active = active


class _Block(nn.Module):
    """Two 3x3 convolutions, each with batch normalisation and ReLU."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)), inplace=True)
        return F.relu(self.norm2(self.conv2(x)), inplace=True)


class _Up(nn.Module):
    """2x2 transposed convolution (stride 2) with batch normalisation and ReLU."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(channels_in, channels_out, 2, stride=2, bias=False)
        self.norm = nn.BatchNorm2d(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.deconv(x)), inplace=True)


class BayesianUNet(nn.Module):
    """The 2-D Bayesian U-Net; ``forward`` returns logits ``(batch, num_classes, height, width)``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        levels = config.levels
        self.encoders = nn.ModuleList(
            _Block(config.in_channels if i == 0 else config.filters(i - 1), config.filters(i)) for i in range(levels)
        )
        self.ups = nn.ModuleList(_Up(config.filters(i + 1), config.filters(i)) for i in range(levels - 1))
        self.decoders = nn.ModuleList(_Block(2 * config.filters(i), config.filters(i)) for i in range(levels - 1))
        self.dropout = MCDropout(config.dropout)
        self.head = nn.Conv2d(config.filters(0), config.num_classes, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        divisor = self.config.divisor
        if x.shape[-1] % divisor or x.shape[-2] % divisor:
            raise ValueError(f"input height and width {tuple(x.shape[-2:])} must be multiples of {divisor}")
        skips: list[torch.Tensor] = []
        h = x
        for i, encoder in enumerate(self.encoders):
            if i:
                h = F.max_pool2d(h, 2)
            h = self.dropout(encoder(h))
            skips.append(h)
        for i in reversed(range(len(self.decoders))):
            h = self.ups[i](h)
            h = self.dropout(self.decoders[i](torch.cat([h, skips[i]], dim=1)))
        return self.head(h)
