"""The autoencoder: uint8 RGB frames <-> latent tokens. It knows pixels; nothing else does.

A frame (H, W, 3) uint8 is encoded by a small convolutional network with ``levels``
stride-2 stages into an (h, w, C) grid, h = H / 2**levels, flattened row-major into
N = h*w tokens of C channels. Latents are normalised by per-channel statistics measured
on training data (``latent_mean``, ``latent_std`` buffers) so that the diffusion noise
and the latents share one scale. The decoder mirrors the encoder with nearest-neighbour
upsampling.

Dimension letters: B batch, H/W frame height/width, h/w latent grid, N = h*w tokens,
C latent channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class AutoencoderConfig:
    """Sizes of the autoencoder.

    Attributes:
        frame_height: H of the RGB frames, divisible by ``2**levels``.
        frame_width: W of the RGB frames, divisible by ``2**levels``.
        latent_channels: C, channels per latent token.
        widths: conv widths per stage, from the pixels inwards; ``len(widths)`` stride-2 stages.
        decoder_shuffle: how many of the decoder's last 2x upsampling stages are replaced by one
            sub-pixel (pixel-shuffle) projection; 0 = all stages are convolutions. Higher is faster.
        decoder_widths: the decoder's conv widths per stage, from the latents outwards, one per
            stage of ``widths``; None mirrors the encoder (``reversed(widths)``). Narrower is
            faster: the decoder's 3x3 convolutions dominate a batched step of a small dynamics.
    """

    frame_height: int = 64
    frame_width: int = 64
    latent_channels: int = 8
    widths: list[int] = field(default_factory=lambda: [32, 64, 64])
    decoder_shuffle: int = 0
    decoder_widths: list[int] | None = None

    def __post_init__(self) -> None:
        if self.decoder_widths is not None and (
            len(self.decoder_widths) != len(self.widths) or not all(isinstance(w, int) and w > 0 for w in self.decoder_widths)
        ):
            raise ValueError(
                f"decoder_widths must be {len(self.widths)} positive ints (one per stage of widths={self.widths}), "
                f"got {self.decoder_widths}; or leave it out to mirror the encoder"
            )
        if not 0 <= self.decoder_shuffle <= len(self.widths):
            raise ValueError(f"decoder_shuffle must be in [0, {len(self.widths)}], got {self.decoder_shuffle}")
        f = 2 ** len(self.widths)
        if self.frame_height % f or self.frame_width % f:
            raise ValueError(
                f"frame size {self.frame_height}x{self.frame_width} must be divisible by 2**len(widths) = {f}; "
                "change the frame size or the number of stages"
            )

    @property
    def grid(self) -> tuple[int, int]:
        f = 2 ** len(self.widths)
        return self.frame_height // f, self.frame_width // f

    @property
    def decoder_stage_widths(self) -> list[int]:
        """The decoder's conv widths, from the latents outwards."""
        return list(self.decoder_widths) if self.decoder_widths is not None else list(reversed(self.widths))

    @property
    def tokens(self) -> int:
        h, w = self.grid
        return h * w


class Encoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, config.widths[0], 3, padding=1), nn.SiLU()]
        cin = config.widths[0]
        for w in config.widths:
            layers += [nn.Conv2d(cin, w, 3, stride=2, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU()]
            cin = w
        layers.append(nn.Conv2d(cin, config.latent_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, h, w)


class Decoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        widths = config.decoder_stage_widths
        conv_stages = len(widths) - config.decoder_shuffle
        layers: list[nn.Module] = [nn.Conv2d(config.latent_channels, widths[0], 3, padding=1), nn.SiLU()]
        cin = widths[0]
        for w in widths[:conv_stages]:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, w, 3, padding=1), nn.SiLU()]
            cin = w
        if config.decoder_shuffle:
            f = 2**config.decoder_shuffle
            layers += [nn.Conv2d(cin, cin, 3, padding=1), nn.SiLU(), nn.Conv2d(cin, 3 * f * f, 1), nn.PixelShuffle(f)]
        else:
            layers.append(nn.Conv2d(cin, 3, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.shuffle = config.decoder_shuffle

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, 3, H, W)

    def head(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The pixel-shuffle head's 1x1 convolution as `frames` applies it: weight (K, f*f*3) in ``dtype``,
        bias (f*f*3,) float32, with the pixel scale folded in; kept until the convolution's weights change."""
        conv, f = self.net[-2], 2**self.shuffle
        key = (conv.weight._version, conv.bias._version, conv.weight.data_ptr(), conv.bias.data_ptr(), dtype)
        if getattr(self, "_head", (None,))[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                K = conv.weight.shape[1]
                # the pixel scale folded into the head: y = 127.5 * (features @ W + b + 1) + 0.5, so that after
                # the clamp the uint8 cast's truncation is rounding (half up; torch.round breaks ties to even)
                weight = conv.weight.view(3, f, f, K).permute(1, 2, 0, 3).reshape(f * f * 3, K) * 127.5  # rows (fy, fx, c)
                bias = (conv.bias.view(3, f, f).permute(1, 2, 0).reshape(-1) + 1.0) * 127.5 + 0.5
                self._head = (key, weight.t().to(dtype), bias)
        return self._head[1], self._head[2]

    @torch.no_grad()
    def frames(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: latents z (B, C, h, w) -> frames (B, H, W, 3) uint8 and finiteness (B,) bool.

        The same function as ``forward`` then rounding. With a pixel-shuffle head the last
        1x1 convolution runs as one matmul over channels-last features whose outputs are
        ordered (row offset, column offset, RGB), so the frame is laid out by one copy with
        contiguous runs of a whole upscaled row segment (the shuffle and the channel permute
        cost more than the convolutions at large batches). The pixel scale is folded into the
        head, the bias is added by the matmul (float32) or with the widening of its bfloat16
        product to float32 (autocast), and the uint8 cast rounds (half up), so two passes over
        the frame are left (clamp, cast) besides the finiteness sum; its sums run in another
        order, so a pixel can round one level apart on a tie.
        ``finite[b]`` is False iff frame b had a NaN or inf before rounding (whose uint8 value is
        undefined).
        """
        if not self.shuffle:
            x = self.net(z).permute(0, 2, 3, 1)  # (B, H, W, 3)
            return to_uint8(x), torch.isfinite(x.sum(dim=(1, 2, 3), dtype=torch.float32))
        f = 2**self.shuffle
        features = z.contiguous(memory_format=torch.channels_last)  # channels-last convolutions: the same values, faster at one frame
        for layer in list(self.net)[:-2]:  # everything before the 1x1 convolution and the shuffle
            features = layer(features)
        B, K, h, w = features.shape
        weight, bias = self.head(features.dtype)
        pixels = features.permute(0, 2, 3, 1).reshape(B * h * w, K)  # (B*h*w, K): channels-last, a view
        if features.dtype == torch.float32:
            y = torch.addmm(bias, pixels, weight)  # (B*h*w, f*f*3), biased inside the matmul
        else:  # a bfloat16 product, biased and widened to float32 in one pass (a bfloat16 bias would cost pixels a level)
            y = torch.add(torch.mm(pixels, weight), bias)  # (B*h*w, f*f*3) float32
        finite = torch.isfinite(y.view(B, -1).sum(dim=1, dtype=torch.float32))  # before the clamp, which would hide an inf
        y.clamp_(0, 255)
        rows = y.view(B, h, w, f, f * 3).transpose(2, 3)  # (B, h, f, w, f*3): frame rows in order
        return rows.to(torch.uint8, memory_format=torch.contiguous_format).view(B, h * f, w * f, 3), finite

class Autoencoder(nn.Module):
    """Frames (B, H, W, 3) uint8 <-> latents (B, N, C) float."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("latent_mean", torch.zeros(config.latent_channels))
        self.register_buffer("latent_std", torch.ones(config.latent_channels))

    def check_frames(self, frames: torch.Tensor) -> None:
        h, w = self.config.frame_height, self.config.frame_width
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (h, w, 3) or frames.dtype != torch.uint8:
            raise ValueError(
                f"frames must be uint8 of shape (B, {h}, {w}, 3), got {tuple(frames.shape)} {frames.dtype}; "
                "resize the frames to the model's frame size"
            )

    def encode_raw(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, H, W, 3) uint8 -> un-normalised latents (B, N, C)."""
        self.check_frames(frames)
        x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W) in [-1, 1]
        z = self.encoder(x)  # (B, C, h, w)
        return z.flatten(2).transpose(1, 2)  # (B, N, C)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, H, W, 3) uint8 -> normalised latents (B, N, C)."""
        return (self.encode_raw(frames) - self.latent_mean) / self.latent_std  # (B, N, C)

    def decode_float(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, N, C) -> pixels (B, H, W, 3) float in about [-1, 1]."""
        h, w = self.config.grid
        z = latents.float() * self.latent_std + self.latent_mean  # (B, N, C)
        z = z.transpose(1, 2).reshape(z.shape[0], -1, h, w)  # (B, C, h, w)
        return self.decoder(z).permute(0, 2, 3, 1)  # (B, H, W, 3)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, N, C) -> frames (B, H, W, 3) uint8."""
        return self.decode_frames(latents)[0]

    def decode_frames(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference decoding: normalised latents (B, N, C) -> frames (B, H, W, 3) uint8 and finiteness (B,) bool (`Decoder.frames`)."""
        h, w = self.config.grid
        z = latents.float() * self.latent_std + self.latent_mean  # (B, N, C)
        return self.decoder.frames(z.transpose(1, 2).reshape(z.shape[0], -1, h, w))

def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels float in about [-1, 1] (any layout) -> contiguous uint8 of the same shape: one copy, then in place."""
    out = pixels.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    return out.add_(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)  # exactly ((x + 1) * 127.5).round().clamp(0, 255)
