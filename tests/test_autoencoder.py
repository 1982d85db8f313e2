"""The inference decoder (`Autoencoder.decode_frames`) computes what the training decoder computes."""

from __future__ import annotations

import pytest
import torch

from worldgym.model.autoencoder import Autoencoder, AutoencoderConfig


@pytest.mark.parametrize("shuffle,decoder_widths", [(0, None), (1, None), (2, None), (3, None), (0, [4, 6, 2]), (2, [6, 4, 4])])
def test_decode_frames_equals_decode_float_then_rounding(shuffle: int, decoder_widths: list[int] | None) -> None:
    torch.manual_seed(shuffle)
    config = AutoencoderConfig(frame_height=32, frame_width=32, latent_channels=4, widths=[8, 8, 8], decoder_shuffle=shuffle, decoder_widths=decoder_widths)
    ae = Autoencoder(config)
    if decoder_widths is not None:  # the decoder's own widths, the encoder's unchanged
        assert ae.decoder.net[0].out_channels == decoder_widths[0] and ae.encoder.net[0].out_channels == 8
    for p in ae.parameters():  # spread the outputs over the whole pixel range
        p.data.normal_(0, 0.5)
    latents = torch.randn(5, ae.config.tokens, 4)
    with torch.no_grad():
        reference = ((ae.decode_float(latents).float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    frames, finite = ae.decode_frames(latents)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == torch.uint8 and frames.is_contiguous()
    assert bool(finite.all())
    diff = (frames.int() - reference.int()).abs()
    # the 1x1 convolution as a matmul sums in another order: at most one level, on rounding ties only
    assert int(diff.max()) <= 1
    assert float((diff > 0).float().mean()) < 1e-3
    assert torch.equal(ae.decode(latents), frames)


def test_decode_frames_flags_non_finite_frames() -> None:
    ae = Autoencoder(AutoencoderConfig(frame_height=16, frame_width=16, latent_channels=4, widths=[8, 8], decoder_shuffle=2))
    latents = torch.randn(4, ae.config.tokens, 4)
    latents[1, 0, 0] = float("nan")
    _, finite = ae.decode_frames(latents)
    assert finite.tolist() == [True, False, True, True]
    with torch.no_grad():  # an inf pixel (here from an inf bias of the head) is flagged although the clamp would hide it
        ae.decoder.net[-2].bias[5] = float("inf")
    _, finite = ae.decode_frames(latents)
    assert finite.tolist() == [False, False, False, False]


def test_decoder_widths_are_checked() -> None:
    with pytest.raises(ValueError, match=r"decoder_widths must be 3 positive ints .* got \[8, 8\]"):
        AutoencoderConfig(frame_height=32, frame_width=32, latent_channels=4, widths=[8, 8, 8], decoder_widths=[8, 8])
    with pytest.raises(ValueError, match="decoder_widths"):
        AutoencoderConfig(frame_height=32, frame_width=32, latent_channels=4, widths=[8, 8, 8], decoder_widths=[8, 0, 8])
    mirrored = AutoencoderConfig(frame_height=32, frame_width=32, latent_channels=4, widths=[4, 8, 16])
    assert mirrored.decoder_stage_widths == [16, 8, 4]
