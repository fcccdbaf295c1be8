"""How much do the 20 corrupted test sets cost on top of plain inference?

Times three ways of evaluating a model on the clean test set plus its 20
corrupted versions (4 corruptions x 5 severities), on the same images:

1. **plain**: 21 inference passes over the clean, batched, decoded test tensor
   (the lower bound: no corruption work at all);
2. **batched** (``part1.train.test_model``'s path): each corruption applied to
   whole batches of the decoded tensor, on the model's device;
3. **per-image template pipeline**: as the course template does it, a
   ``Dataset`` that converts every image to PIL, applies
   ``Compose([ToTensor(), <corruption>, Normalize])`` (JPEG through PIL), and a
   ``DataLoader`` that collates the images. Only its data preparation is
   timed; the model's share is the same as in (1) and is added.

The goal of the assignment's implementation is (2) <= 1.15 x (1). Both wall-clock
and process CPU time are reported: on a shared machine the CPU time is the
steadier measure.

Usage::

    python -m part1.benchmark_corruptions --data_dir ../shared/data/cifar10 --num_images 1000
"""
from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

from part1.corruptions import CORRUPTIONS, SEVERITIES
from part1.data import CIFAR_MEAN, CIFAR_STD, TEST_SUBSET_SEED, load_cifar10, normalize, subset_indices, to_float
from part1.model import MODEL_NAMES, get_model
from part1.train import default_device


class _Clock:
    """Wall-clock and process CPU seconds of a ``with`` block."""

    def __enter__(self) -> "_Clock":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _template_corruption(name: str, severity: int) -> Callable:
    """The template's per-image transform for one test set: PIL image -> normalised (3, H, W) tensor."""
    corruption = CORRUPTIONS[name](severity)
    norm = transforms.Normalize(CIFAR_MEAN, CIFAR_STD)
    if name == "gaussian_noise":
        std = corruption.std
        middle = transforms.Lambda(lambda t: (t + std * torch.randn(t.shape)).clamp(0, 1))
    elif name == "gaussian_blur":
        middle = transforms.GaussianBlur(corruption.kernel_size, sigma=(corruption.sigma, corruption.sigma))
    elif name == "contrast":
        middle = transforms.ColorJitter(contrast=(corruption.factor, corruption.factor))
    else:
        def pil_jpeg(img: Image.Image, quality: int = corruption.quality) -> Image.Image:
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=quality)
            return Image.open(buffer).convert("RGB")

        return transforms.Compose([transforms.Lambda(pil_jpeg), transforms.ToTensor(), norm])
    return transforms.Compose([transforms.ToTensor(), middle, norm])


class _PerImageDataset(torch.utils.data.Dataset):
    """HWC uint8 arrays converted to PIL and transformed one at a time, as ``torchvision.datasets.CIFAR10``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images, self.labels, self.transform = images.permute(0, 2, 3, 1).numpy(), labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


@torch.no_grad()
def run(model_name: str, data_dir: str, num_images: int, batch_size: int, device: torch.device,
        seed: int) -> dict[str, float]:
    """Time the three pipelines (see the module docstring); returns seconds and ratios."""
    data = load_cifar10(data_dir)
    idx = subset_indices(data["test_y"], num_images, TEST_SUBSET_SEED)
    images_cpu, labels = data["test_x"][idx], data["test_y"][idx]
    images = images_cpu.to(device)
    torch.manual_seed(seed)
    model = get_model(model_name).to(device).eval()
    sets = [(None, 0)] + [(c, s) for c in CORRUPTIONS for s in SEVERITIES]

    def forward_all(batches) -> None:
        for x in batches:
            model(x).argmax(dim=1).cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def batched(name: str | None, severity: int, k: int):
        corruption = CORRUPTIONS[name](severity) if name else None
        gen = torch.Generator().manual_seed(seed * 1000 + k)
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size])
            yield normalize(corruption(x, gen) if corruption else x)

    forward_all(batched(None, 0, 0))  # warm-up: allocator, kernels, caches
    with _Clock() as plain:
        for k in range(len(sets)):
            forward_all(batched(None, 0, k))
    with _Clock() as corrupted:
        for k, (name, severity) in enumerate(sets):
            forward_all(batched(name, severity, k))
    with _Clock() as batched_prep:
        for k, (name, severity) in enumerate(sets):
            for _ in batched(name, severity, k):
                pass
    with _Clock() as per_image_prep:
        for name, severity in sets:
            transform = (_template_corruption(name, severity) if name else
                         transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]))
            loader = torch.utils.data.DataLoader(_PerImageDataset(images_cpu, labels, transform), batch_size)
            for _ in loader:
                pass

    result = {"model_name": model_name, "num_images": len(idx), "batch_size": batch_size, "device": str(device),
              "threads": torch.get_num_threads()}
    for key, clock in (("plain_21_passes", plain), ("batched_corrupted_21_sets", corrupted),
                       ("batched_data_prep_only", batched_prep), ("per_image_data_prep_only", per_image_prep)):
        result[f"{key}_wall_s"], result[f"{key}_cpu_s"] = round(clock.wall, 2), round(clock.cpu, 2)
    for unit in ("wall", "cpu"):
        base = result[f"plain_21_passes_{unit}_s"]
        result[f"batched_vs_plain_{unit}"] = round(result[f"batched_corrupted_21_sets_{unit}_s"] / base, 3)
        result[f"per_image_pipeline_vs_plain_{unit}"] = round(
            (base + result[f"per_image_data_prep_only_{unit}_s"]) / base, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="data/", help="CIFAR-10 folder or archive (see part1/data.py)")
    parser.add_argument("--model_name", default="resnet18", choices=MODEL_NAMES)
    parser.add_argument("--num_images", type=int, default=10_000, help="test images per set (fixed subset)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results_dir", default="results/part1", help="where benchmark_corruptions.json goes")
    args = parser.parse_args()
    device = torch.device(args.device) if args.device else default_device()
    try:
        result = run(args.model_name, args.data_dir, args.num_images, args.batch_size, device, args.seed)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    out = Path(args.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark_corruptions.json").write_text(json.dumps(result, indent=2) + "\n")
    n, m = result["num_images"], result["model_name"]
    print(f"{m}, {n} test images x 21 sets, batch {result['batch_size']}, {result['device']}, "
          f"{result['threads']} thread(s)")
    print(f"{'pipeline':<44}{'wall s':>9}{'CPU s':>9}")
    rows = [("21 plain inference passes", "plain_21_passes"),
            ("clean + 20 corrupted, batched (test_model)", "batched_corrupted_21_sets"),
            ("  data preparation only, batched", "batched_data_prep_only"),
            ("  data preparation only, per-image template", "per_image_data_prep_only")]
    for label, key in rows:
        print(f"{label:<44}{result[key + '_wall_s']:>9.2f}{result[key + '_cpu_s']:>9.2f}")
    for unit in ("cpu", "wall"):
        print(f"{unit}: batched / plain = {result[f'batched_vs_plain_{unit}']:.3f} (goal <= 1.15); "
              f"per-image template / plain = {result[f'per_image_pipeline_vs_plain_{unit}']:.3f}")
    print(f"written to {out / 'benchmark_corruptions.json'}")


if __name__ == "__main__":
    main()
