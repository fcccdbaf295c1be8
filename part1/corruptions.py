"""The four test-time corruptions of Question 1.2, at severities 1-5.

Each ``*_transform(severity)`` returns a callable that takes one image
``(3, H, W)`` or a batch ``(N, 3, H, W)`` of floats in [0, 1] (before
normalisation) and returns a tensor of the same shape in [0, 1]. A batch gives
exactly the per-image results; the only random corruption (Gaussian noise)
draws from an optional ``torch.Generator`` so that a seed fixes it.

=============  ===========================  ==============================
corruption     parameter                    severities 1, 2, 3, 4, 5
=============  ===========================  ==============================
noise          std of N(0, std^2) per pixel  0.04, 0.07, 0.10, 0.15, 0.25
blur           Gaussian sigma, kernel 11     0.4, 0.6, 0.8, 1.1, 1.5
contrast       contrast factor c             0.75, 0.6, 0.5, 0.4, 0.3
jpeg           JPEG quality                  90, 70, 50, 30, 10
=============  ===========================  ==============================
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

NOISE_STD = (0.04, 0.07, 0.10, 0.15, 0.25)
BLUR_SIGMA = (0.4, 0.6, 0.8, 1.1, 1.5)
BLUR_KERNEL = 11
CONTRAST_FACTOR = (0.75, 0.6, 0.5, 0.4, 0.3)
JPEG_QUALITY = (90, 70, 50, 30, 10)
SEVERITIES = (1, 2, 3, 4, 5)


def _pick(values: tuple, severity: int):
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return values[severity - 1]


class GaussianNoise:
    """``clamp(x + std * z, 0, 1)`` with ``z ~ N(0, I)``.

    The noise is drawn on the CPU (then moved to ``x``'s device) so that a seeded
    generator gives the same corruption on every device. For a batch, the draws
    equal those of the images one after another from the same generator.
    """

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
        return (x + self.std * noise.to(x.device, x.dtype)).clamp_(0, 1)

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std})"


class GaussianBlur:
    """``torchvision.transforms.GaussianBlur(kernel_size, sigma=(sigma, sigma))`` (reflect padding)."""

    def __init__(self, sigma: float, kernel_size: int = BLUR_KERNEL) -> None:
        self.sigma, self.kernel_size = sigma, kernel_size

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return F.gaussian_blur(x, [self.kernel_size, self.kernel_size], [self.sigma, self.sigma])

    def __repr__(self) -> str:
        return f"GaussianBlur(kernel_size={self.kernel_size}, sigma={self.sigma})"


class Contrast:
    """``ColorJitter(contrast=(c, c))``: ``clamp(c * x + (1 - c) * mean(gray(x)), 0, 1)`` per image."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return F.adjust_contrast(x, self.factor)

    def __repr__(self) -> str:
        return f"Contrast(factor={self.factor})"


class JPEGCompression:
    """Round to uint8, JPEG-encode at ``quality``, decode, back to float in [0, 1].

    Runs libjpeg on the CPU over the whole batch (``encode_jpeg`` / ``decode_jpeg``
    take lists), then returns the result on ``x``'s device.
    """

    def __init__(self, quality: int) -> None:
        self.quality = quality

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch = x if x.dim() == 4 else x.unsqueeze(0)
        as_uint8 = batch.mul(255).round_().clamp_(0, 255).to("cpu", torch.uint8)
        with warnings.catch_warnings():
            # torchvision 0.29 flags its libjpeg bindings as deprecated in favour of TorchCodec,
            # which is not a dependency here; they still work and are batched.
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = decode_jpeg(encode_jpeg(list(as_uint8), quality=self.quality))
        out = torch.stack(decoded).to(x.device, x.dtype).div_(255)
        return out if x.dim() == 4 else out[0]

    def __repr__(self) -> str:
        return f"JPEGCompression(quality={self.quality})"


def gaussian_noise_transform(severity: int = 1) -> GaussianNoise:
    """Additive Gaussian noise with std 0.04, 0.07, 0.10, 0.15, 0.25 for severity 1-5."""
    return GaussianNoise(_pick(NOISE_STD, severity))


def gaussian_blur_transform(severity: int = 1) -> GaussianBlur:
    """Gaussian blur, kernel 11, sigma 0.4, 0.6, 0.8, 1.1, 1.5 for severity 1-5."""
    return GaussianBlur(_pick(BLUR_SIGMA, severity))


def contrast_transform(severity: int = 1) -> Contrast:
    """Contrast reduction by factor 0.75, 0.6, 0.5, 0.4, 0.3 for severity 1-5."""
    return Contrast(_pick(CONTRAST_FACTOR, severity))


def jpeg_transform(severity: int = 1) -> JPEGCompression:
    """JPEG compression at quality 90, 70, 50, 30, 10 for severity 1-5."""
    return JPEGCompression(_pick(JPEG_QUALITY, severity))


CORRUPTIONS: dict[str, Callable[[int], Callable[..., torch.Tensor]]] = {
    "gaussian_noise": gaussian_noise_transform,
    "gaussian_blur": gaussian_blur_transform,
    "contrast": contrast_transform,
    "jpeg": jpeg_transform,
}
