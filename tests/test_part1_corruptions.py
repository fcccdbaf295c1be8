"""Unit tests of the Part 1b corruptions against their specification and torchvision references."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from part1.corruptions import (
    CORRUPTIONS,
    contrast_transform,
    gaussian_blur_transform,
    gaussian_noise_transform,
    jpeg_transform,
)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Four smooth-ish CIFAR-shaped images in [0, 1] (random noise would make JPEG tests meaningless)."""
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(4, 3, 8, 8, generator=gen)
    return torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    "factory, attribute, expected",
    [
        (gaussian_noise_transform, "std", [0.04, 0.07, 0.10, 0.15, 0.25]),
        (gaussian_blur_transform, "sigma", [0.4, 0.6, 0.8, 1.1, 1.5]),
        (contrast_transform, "factor", [0.75, 0.6, 0.5, 0.4, 0.3]),
        (jpeg_transform, "quality", [90, 70, 50, 30, 10]),
    ],
)
def test_parameters_per_severity(factory, attribute, expected):
    assert [getattr(factory(s), attribute) for s in range(1, 6)] == pytest.approx(expected)
    for bad in (0, 6, -1):
        with pytest.raises(ValueError, match="severity"):
            factory(bad)


def test_blur_kernel_is_11():
    assert all(gaussian_blur_transform(s).kernel_size == 11 for s in range(1, 6))


@pytest.mark.parametrize("severity", [1, 5])
def test_blur_and_contrast_match_torchvision(images, severity):
    sigma = gaussian_blur_transform(severity).sigma
    ref_blur = transforms.GaussianBlur(11, sigma=(sigma, sigma))
    factor = contrast_transform(severity).factor
    ref_contrast = transforms.ColorJitter(contrast=(factor, factor))
    for img in images:
        torch.testing.assert_close(gaussian_blur_transform(severity)(img), ref_blur(img))
        torch.testing.assert_close(contrast_transform(severity)(img), ref_contrast(img))


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_jpeg_matches_pil(images, severity):
    quality = jpeg_transform(severity).quality
    out = jpeg_transform(severity)(images[0])
    as_uint8 = (images[0] * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(as_uint8).save(buffer, format="JPEG", quality=quality)
    ref = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 255
    # Same libjpeg quantisation tables; the codecs may differ by a rounding step here and there.
    assert (out - ref).abs().mean() < 2 / 255
    assert out.shape == images[0].shape and out.dtype == torch.float32


def test_jpeg_degrades_with_severity(images):
    errors = [(jpeg_transform(s)(images) - images).abs().mean().item() for s in range(1, 6)]
    assert errors == sorted(errors) and errors[0] > 0


def test_noise_std_and_clamp():
    grey = torch.full((16, 3, 32, 32), 0.5)
    for severity, std in enumerate([0.04, 0.07, 0.10, 0.15], start=1):
        out = gaussian_noise_transform(severity)(grey, torch.Generator().manual_seed(severity))
        assert (out - grey).std().item() == pytest.approx(std, rel=0.03)
    white = torch.ones(2, 3, 32, 32)
    out = gaussian_noise_transform(5)(white, torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1 and (out < 1).any()


def test_noise_reproducible_under_seed(images):
    noise = gaussian_noise_transform(3)
    a = noise(images, torch.Generator().manual_seed(7))
    b = noise(images, torch.Generator().manual_seed(7))
    c = noise(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
@pytest.mark.parametrize("severity", [2, 5])
def test_batch_equals_per_image(images, name, severity):
    corruption = CORRUPTIONS[name](severity)
    batch = corruption(images, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    single = torch.stack([corruption(img, gen) for img in images])
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-6)
    assert batch.shape == images.shape and 0 <= batch.min() and batch.max() <= 1
