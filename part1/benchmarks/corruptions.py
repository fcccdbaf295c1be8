"""How much do the 20 corrupted test sets cost on top of plain inference?

    python -m part1.benchmarks.corruptions --data_dir ../shared/data/cifar10 --num_images 1000 --threads 1

Times, on the same test images: (1) 21 plain inference passes (the lower bound); (2) the clean and 20 corrupted
sets as ``part1.train.test_model`` runs them (each corruption on whole batches on the model's device); (3) the
data preparation alone, batched; (4) the data preparation of the course template's per-image pipeline (PIL
image -> ``ToTensor`` -> corruption -> ``Normalize``, one image at a time through a ``DataLoader``), whose
model share equals (1). Goal: (2) <= 1.15 x (1). Wall-clock and process CPU time are reported; on a shared
machine the CPU time is the steadier one. Writes ``<results_dir>/benchmark_corruptions.json``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms

from common.cli import add_runtime_args, make_parser, positive_int, run_cli
from common.io import write_json
from common.runs import ensure_writable
from common.runtime import resolve_device, resolve_precision, set_threads, start_line
from common.timing import interleaved_medians
from part1.corruptions import CORRUPTIONS
from part1.data import CIFAR_MEAN, CIFAR_STD, indices_of_test_set, load_cifar10, normalize, to_float
from part1.evaluate import TEST_SETS, accuracy_on_test_sets, accuracy_under, corruption_generator
from part1.model import MODEL_NAMES, get_model

PIPELINES = {
    "plain_21_passes": "21 plain inference passes",
    "batched_corrupted_21_sets": "clean + 20 corrupted, batched (test_model)",
    "batched_data_prep_only": "  data preparation only, batched",
    "per_image_data_prep_only": "  data preparation only, per-image template",
}


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


def pipelines(model, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, precision: str):
    """The four timed functions of the module docstring, on uint8 ``images`` on the model's device."""

    def batched_prep() -> None:
        for index, (name, severity) in enumerate([(None, 0), *TEST_SETS]):
            corruption, generator = (CORRUPTIONS[name](severity) if name else None), corruption_generator(seed, index)
            for x in images.split(batch_size):
                normalize(corruption(to_float(x), generator) if corruption else to_float(x))

    def per_image_prep() -> None:
        plain = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
        for name, severity in [(None, 0), *TEST_SETS]:
            transform = _template_corruption(name, severity) if name else plain
            for _ in torch.utils.data.DataLoader(_PerImageDataset(images.cpu(), labels.cpu(), transform), batch_size):
                pass

    return {
        "plain_21_passes": lambda: [
            accuracy_under(model, images, labels, batch_size, precision=precision) for _ in range(21)
        ],
        "batched_corrupted_21_sets": lambda: accuracy_on_test_sets(model, images, labels, batch_size, seed, precision),
        "batched_data_prep_only": batched_prep,
        "per_image_data_prep_only": per_image_prep,
    }


@torch.no_grad()
def run(args, device: torch.device, precision: str) -> dict[str, float]:
    """Time the pipelines in ``--repeats`` interleaved rounds (medians); returns seconds and ratios."""
    data = load_cifar10(args.data_dir)
    idx = indices_of_test_set(data["test_y"], args.num_images)
    images, labels = data["test_x"][idx].to(device), data["test_y"][idx].to(device)
    torch.manual_seed(args.seed)
    model = get_model(args.model_name).to(device).eval()
    accuracy_under(model, images, labels, args.batch_size, precision=precision)  # warm-up: allocator, kernels
    functions = pipelines(model, images, labels, args.batch_size, args.seed, precision)
    medians = interleaved_medians(functions, repeats=args.repeats, warmup=0)
    result = {
        "model_name": args.model_name,
        "num_images": len(idx),
        "batch_size": args.batch_size,
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
    }
    for key, (wall, cpu) in medians.items():
        result[f"{key}_wall_s"], result[f"{key}_cpu_s"] = round(wall, 3), round(cpu, 3)
    for unit, column in (("wall", 0), ("cpu", 1)):
        base = max(medians["plain_21_passes"][column], 1e-9)
        batched, per_image = medians["batched_corrupted_21_sets"][column], medians["per_image_data_prep_only"][column]
        result[f"batched_vs_plain_{unit}"] = round(batched / base, 3)
        result[f"per_image_pipeline_vs_plain_{unit}"] = round((base + per_image) / base, 3)
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Parse the options, time, print the table and write the JSON."""
    parser = make_parser("python -m part1.benchmarks.corruptions", __doc__)
    parser.add_argument("--data_dir", default="data/", help="CIFAR-10 folder or archive (see part1/data.py)")
    parser.add_argument("--model_name", default="resnet18", choices=MODEL_NAMES, help="network (untrained)")
    parser.add_argument("--num_images", type=positive_int, default=10_000, help="test images per set (fixed subset)")
    parser.add_argument("--batch_size", type=positive_int, default=128, help="images per batch")
    parser.add_argument("--repeats", type=positive_int, default=1, help="timed rounds (median)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the weights and the noise")
    parser.add_argument("--results_dir", default="results/part1", help="folder for benchmark_corruptions.json")
    add_runtime_args(parser)
    args = parser.parse_args(argv)
    ensure_writable(args.results_dir)
    set_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    start_line("part1.benchmarks.corruptions", device, precision, args.results_dir)
    result = run(args, device, precision)
    print(f"{args.model_name}, {result['num_images']} test images x 21 sets, batch {args.batch_size}")
    print(f"{'pipeline':<46}{'wall s':>9}{'CPU s':>9}")
    for key, label in PIPELINES.items():
        print(f"{label:<46}{result[key + '_wall_s']:>9.2f}{result[key + '_cpu_s']:>9.2f}")
    for unit in ("cpu", "wall"):
        print(
            f"{unit}: batched / plain = {result[f'batched_vs_plain_{unit}']:.3f} (goal <= 1.15); per-image "
            f"template / plain = {result[f'per_image_pipeline_vs_plain_{unit}']:.3f}"
        )
    path = write_json(result, os.path.join(args.results_dir, "benchmark_corruptions.json"))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    run_cli(main)
