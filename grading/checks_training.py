"""Question 1.2 (a): get_model, evaluate_model, train_model and test_model on a tiny synthetic CIFAR-10.

Nothing is downloaded: the data are written where the student's loader looks
(torchvision's pickles for the template, whose MD5 check is relaxed in this
process; an image folder for this repository) and the network is a spy
(:mod:`grading.cifar_probes`) that records epochs, validation and the learning
rate, so the checks need no real training.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import torch
import torchvision.datasets.cifar as torchvision_cifar
from torch.utils.data import DataLoader, TensorDataset

from grading.cifar_probes import (
    ACCURACY_BY_EPOCH,
    LOG,
    LabelProbe,
    SpyNet,
    SyntheticCifar,
    find_spy_weight,
    install_hooks,
    write_image_folder_cifar,
    write_template_cifar,
)
from grading.failures import CheckFailed, call_student

MAIN = "part1/main_cnn.py"
EPOCHS, BATCH_SIZE, LEARNING_RATE = 3, 64, 0.1
# Template: cifar10_utils holds out 5000 validation images, leaving 320 = 5 batches for training.
# Repository: a tenth is held out, leaving 576 = 9 batches.
DATA = {"template": SyntheticCifar(num_train=5320, num_test=100), "repo": SyntheticCifar(num_train=640, num_test=100)}
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast", "jpeg")
SEVERITIES = (1, 2, 3, 4, 5)
NETWORKS = ("debug", "vgg11", "vgg11_bn", "resnet18", "resnet34", "densenet121")


def _local_files_only(fpath, md5=None) -> bool:
    """Replaces torchvision's MD5 check: the synthetic files count as present, and nothing is ever downloaded."""
    return os.path.isfile(fpath)


torchvision_cifar.check_integrity = _local_files_only
install_hooks()


def _data_dir(ctx) -> str:
    """The synthetic CIFAR-10 of this layout, written once per process."""
    if "cifar_dir" not in ctx.cache:
        folder = ctx.scratch.parent / "cifar10"
        write = write_template_cifar if ctx.code.layout == "template" else write_image_folder_cifar
        write(folder, DATA[ctx.code.layout])
        ctx.cache["cifar_dir"] = str(folder)
    return ctx.cache["cifar_dir"]


def _accuracy_matches(value, expected: float) -> bool:
    """An accuracy as a fraction or a percentage."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return abs(value - expected) < 1e-6 or abs(value - 100 * expected) < 1e-4


# --------------------------------------------------------------------------- evaluate_model
def _label_loader(predicted: list[int], labels: list[int], batch_size: int) -> DataLoader:
    x = torch.zeros(len(predicted), 3, 32, 32)
    x[:, 0, 0, 0] = torch.tensor(predicted, dtype=torch.float32)
    return DataLoader(TensorDataset(x, torch.tensor(labels)), batch_size=batch_size)


def check_evaluate_model_average(ctx) -> None:
    """10 images in batches of 4, 4, 2: 8 right, the last 2 wrong -> 0.8 (a mean of batch accuracies gives 0.667)."""
    evaluate = ctx.code.attribute(MAIN, "evaluate_model")
    labels = [i % 10 for i in range(10)]
    predicted = labels[:8] + [(label + 1) % 10 for label in labels[8:]]
    value = call_student(
        "evaluate_model(model, loader of 10 images in batches 4, 4, 2, 'cpu')",
        evaluate,
        LabelProbe(),
        _label_loader(predicted, labels, 4),
        torch.device("cpu"),
    )
    if _accuracy_matches(value, 0.8):
        return
    if _accuracy_matches(value, 2 / 3):
        raise CheckFailed(
            "evaluate_model averages the accuracies of the batches (gives 0.667 for batches of "
            "4, 4, 2 images with 8 of 10 right); divide the correct predictions by the number of images"
        )
    raise CheckFailed(f"evaluate_model returned {value!r} for 8 of 10 images right (batches 4, 4, 2), expected 0.8")


def check_evaluate_model_eval_mode(ctx) -> None:
    """A model that predicts wrong in training mode (as dropout would): all 8 right only in eval mode."""
    evaluate = ctx.code.attribute(MAIN, "evaluate_model")
    labels = [i % 10 for i in range(8)]
    model = LabelProbe(mode_sensitive=True).train()
    value = call_student(
        "evaluate_model(model in training mode, loader of 8 images, 'cpu')",
        evaluate,
        model,
        _label_loader(labels, labels, 4),
        torch.device("cpu"),
    )
    if _accuracy_matches(value, 1.0):
        return
    if _accuracy_matches(value, 0.0):
        raise CheckFailed(
            "evaluate_model runs the model in training mode (dropout and batch-norm stay active); "
            "call model.eval() first"
        )
    raise CheckFailed(f"evaluate_model returned {value!r} for 8 of 8 images right in eval mode, expected 1.0")


# --------------------------------------------------------------------------- train_model
def _train_run(ctx) -> dict:
    """Run the student's train_model once per process on the spy (3 epochs); the checks read the log."""
    if "train_run" not in ctx.cache:
        try:
            ctx.cache["train_run"] = _run_training(ctx)
        except CheckFailed as failure:
            ctx.cache["train_run"] = failure  # the other train_model checks fail the same way without rerunning
    if isinstance(ctx.cache["train_run"], CheckFailed):
        raise ctx.cache["train_run"]
    return ctx.cache["train_run"]


def _run_training(ctx) -> dict:
    train = ctx.code.attribute(MAIN, "train_model")
    data_dir = _data_dir(ctx)
    checkpoint = ctx.scratch.parent / "checkpoints" / "best_model.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    LOG.reset()
    try:
        returned = call_student(
            f"train_model(model, lr={LEARNING_RATE}, batch_size={BATCH_SIZE}, epochs={EPOCHS}, data_dir, "
            "checkpoint_name, 'cpu')",
            train,
            SpyNet(),
            LEARNING_RATE,
            BATCH_SIZE,
            EPOCHS,
            data_dir,
            str(checkpoint),
            torch.device("cpu"),
        )
    finally:
        LOG.active = False
    ids = torch.cat(LOG.training_ids) if LOG.training_ids else torch.zeros(0, dtype=torch.long)
    return {
        "returned": returned,
        "checkpoint": checkpoint,
        "steps": LOG.steps,
        "lrs": list(LOG.learning_rates),
        "scheduler_steps": list(LOG.scheduler_steps),
        "evaluations": list(LOG.evaluations),
        "seen": Counter(ids.tolist()),
    }


def _steps_per_epoch(run: dict) -> int:
    if run["steps"] == 0 or run["steps"] % EPOCHS:
        raise CheckFailed(
            f"cannot tell the epochs apart: train_model made {run['steps']} optimizer steps for {EPOCHS} epochs"
        )
    return run["steps"] // EPOCHS


def check_train_model_epochs(ctx) -> None:
    """Every training image is seen once per epoch, with one optimizer step per batch."""
    run = _train_run(ctx)
    if not run["seen"]:
        raise CheckFailed(
            f"train_model(..., epochs={EPOCHS}) never ran the model on training images in "
            "training mode (no training loop?)"
        )
    passes = Counter(run["seen"].values())
    num_images = len(run["seen"])
    if set(passes) != {EPOCHS}:
        times = ", ".join(f"{n} image(s) {k} time(s)" for k, n in sorted(passes.items()))
        raise CheckFailed(
            f"train_model(..., epochs={EPOCHS}) showed the {num_images} training images {times}; "
            f"expected each {EPOCHS} times"
        )
    batches = {-(-num_images // BATCH_SIZE), num_images // BATCH_SIZE}
    if run["steps"] not in {EPOCHS * b for b in batches}:
        raise CheckFailed(
            f"train_model made {run['steps']} optimizer steps for {EPOCHS} epochs of {num_images} "
            f"images in batches of {BATCH_SIZE}; expected {EPOCHS * max(batches)} (one per batch)"
        )


def check_train_model_schedule(ctx) -> None:
    """``scheduler.step()`` once per epoch (before or after its batches); the learning rate constant within an epoch."""
    run = _train_run(ctx)
    per_epoch = _steps_per_epoch(run)
    calls = run["scheduler_steps"]
    after = [per_epoch * e for e in range(1, EPOCHS + 1)]
    before = [per_epoch * e for e in range(EPOCHS)]
    if not calls:
        raise CheckFailed("train_model never calls scheduler.step(); step the learning-rate schedule once per epoch")
    if calls not in (after, before):
        if len(calls) >= run["steps"]:
            raise CheckFailed(
                f"train_model steps the learning-rate scheduler after every batch ({len(calls)} calls in "
                f"{EPOCHS} epochs); step it once per epoch"
            )
        raise CheckFailed(
            f"train_model steps the learning-rate scheduler {len(calls)} time(s) in {EPOCHS} epochs, "
            f"after optimizer steps {calls}; expected once per epoch, after steps {after}"
        )
    for epoch in range(EPOCHS):
        rates = set(run["lrs"][epoch * per_epoch : (epoch + 1) * per_epoch])
        if len(rates) > 1:
            raise CheckFailed(f"the learning rate changes within epoch {epoch + 1}: {sorted(rates)}")


def check_train_model_validation(ctx) -> None:
    """Some images go through the model in eval mode (or without gradients) after every epoch's training."""
    run = _train_run(ctx)
    per_epoch = _steps_per_epoch(run)
    validated = {steps for steps, images in run["evaluations"] if images}
    missing = [e for e in range(1, EPOCHS + 1) if per_epoch * e not in validated]
    if missing:
        raise CheckFailed(
            f"train_model does not validate after epoch(s) {', '.join(map(str, missing))} of {EPOCHS} "
            "(no model call in eval mode there)"
        )


def _best_epoch() -> int:
    return max(range(1, EPOCHS + 1), key=lambda e: ACCURACY_BY_EPOCH[e])


def _epochs_text() -> str:
    return ", ".join(f"epoch {e}: {ACCURACY_BY_EPOCH[e]:.2f}" for e in range(1, EPOCHS + 1))


def check_train_model_best(ctx) -> None:
    """The returned model has the weights of the epoch with the best validation accuracy."""
    run = _train_run(ctx)
    weight = find_spy_weight(run["returned"])
    if weight is None:
        raise CheckFailed(f"train_model returned {type(run['returned']).__name__}, not the trained model")
    epoch, best = int(round(float(weight[0, 0]))), _best_epoch()
    if epoch != best:
        raise CheckFailed(
            f"train_model returned the model after epoch {epoch}, but epoch {best} had the best "
            f"validation accuracy ({_epochs_text()})"
        )


def check_train_model_checkpoint(ctx) -> None:
    """``checkpoint_name`` holds the best epoch's weights (state dict, model, or a dict containing either)."""
    run = _train_run(ctx)
    path = run["checkpoint"]
    if not path.is_file():
        raise CheckFailed("train_model saved nothing at checkpoint_name")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckFailed(
            f"the file at checkpoint_name does not load with torch.load ({type(error).__name__})"
        ) from None
    weight = find_spy_weight(saved)
    if weight is None:
        raise CheckFailed("the file at checkpoint_name holds no model weights")
    epoch, best = int(round(float(weight[0, 0]))), _best_epoch()
    if epoch != best:
        raise CheckFailed(
            f"checkpoint_name holds the model after epoch {epoch}, expected the best epoch {best} ({_epochs_text()})"
        )


# --------------------------------------------------------------------------- test_model
class _CorruptionSpy:
    """Wraps a corruption factory; records the severities asked for and the images each corruption touched."""

    def __init__(self, name: str, factory, record: Counter) -> None:
        self.name, self.factory, self.record = name, factory, record
        self.created: set[int] = set()
        self.__name__ = getattr(factory, "__name__", name)

    def __call__(self, severity=1, *args, **kwargs):
        corruption = self.factory(severity, *args, **kwargs)
        self.created.add(int(severity))
        key, record = (self.name, int(severity)), self.record

        def corrupt(image, *more, **options):
            record[key] += image.shape[0] if getattr(image, "ndim", 3) == 4 else 1
            return corruption(image, *more, **options)

        return corrupt


def _corruption_name(text: str) -> str | None:
    text = text.lower()
    return next((name for name in CORRUPTIONS if name.split("_")[-1] in text), None)


def _install_corruption_spies(namespace: dict, record: Counter, saved: list) -> list[_CorruptionSpy]:
    """Replace the corruption factories in ``namespace`` (``*_transform`` names, or dicts of them) by spies.

    ``saved`` receives ``(namespace, key, original)`` to undo it.
    """
    spies = []
    for key, value in list(namespace.items()):
        name = _corruption_name(key) if callable(value) and key.endswith("_transform") else None
        if name and not isinstance(value, _CorruptionSpy):
            saved.append((namespace, key, value))
            spies.append(_CorruptionSpy(name, value, record))
            namespace[key] = spies[-1]
        elif isinstance(value, dict) and len(value) >= 4 and all(callable(v) for v in value.values()):
            names = {k: _corruption_name(str(k)) for k in value}
            if all(names.values()) and not any(isinstance(v, _CorruptionSpy) for v in value.values()):
                saved.append((namespace, key, dict(value)))
                for k in value:
                    spies.append(_CorruptionSpy(names[k], value[k], record))
                    value[k] = spies[-1]
    return spies


def _student_namespaces(ctx, function) -> list[dict]:
    """The globals of ``function`` and of every loaded module from the submission (corruptions may live anywhere)."""
    root = str(ctx.code.root.resolve())
    namespaces = [function.__globals__]
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path and str(Path(path).resolve()).startswith(root) and vars(module) is not function.__globals__:
            namespaces.append(vars(module))
    return namespaces


def check_test_model_corruptions(ctx) -> None:
    """test_model evaluates the clean test set and every corruption at every severity on all test images."""
    test = ctx.code.attribute(MAIN, "test_model")
    data_dir = _data_dir(ctx)
    num_test = DATA[ctx.code.layout].num_test
    record, saved = Counter(), []
    spies = [
        spy
        for namespace in _student_namespaces(ctx, test)
        for spy in _install_corruption_spies(namespace, record, saved)
    ]
    LOG.reset()
    try:
        call_student(
            "test_model(model, batch_size=50, data_dir, 'cpu', seed=0)",
            test,
            SpyNet(),
            50,
            data_dir,
            torch.device("cpu"),
            0,
        )
    finally:
        LOG.active = False
        for namespace, key, value in reversed(saved):
            if isinstance(value, dict):
                namespace[key].update(value)
            else:
                namespace[key] = value
    if not spies:
        raise CheckFailed("found no corruption functions (gaussian_noise_transform, ...) where test_model looks")
    missing = [f"{c} at severity {s}" for c in CORRUPTIONS for s in SEVERITIES if record[(c, s)] < num_test]
    if missing:
        raise CheckFailed(
            f"test_model did not apply {len(missing)} of the 20 corruptions to all {num_test} test "
            f"images: {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"
        )
    evaluated = sum(images for _, images in LOG.evaluations)
    if evaluated < 21 * num_test:
        raise CheckFailed(
            f"test_model ran the model on {evaluated} images in eval mode; expected the {num_test} "
            f"test images 21 times (clean + 4 corruptions x 5 severities)"
        )


# --------------------------------------------------------------------------- get_model (given by the template)
def _reference_parameter_count(name: str) -> int:
    from torchvision import models

    with torch.device("meta"):
        if name == "debug":
            return 32 * 32 * 3 * 10 + 10
        return sum(p.numel() for p in getattr(models, name)(num_classes=10).parameters())


def check_get_model_architectures(ctx) -> None:
    """Each of the six names builds the torchvision network (same parameter count) with 10 outputs."""
    get_model = ctx.code.attribute(MAIN, "get_model")
    for name in NETWORKS:
        model = call_student(f"get_model({name!r})", get_model, name)
        if not isinstance(model, torch.nn.Module):
            raise CheckFailed(f"get_model({name!r}) returned {type(model).__name__}, not a network")
        count, expected = sum(p.numel() for p in model.parameters()), _reference_parameter_count(name)
        if count != expected:
            raise CheckFailed(
                f"get_model({name!r}) has {count} parameters; torchvision's {name} with 10 classes has {expected}"
            )
        with torch.no_grad():
            out = call_student(f"get_model({name!r}) on 2 images", model.eval(), torch.zeros(2, 3, 32, 32))
        if tuple(out.shape) != (2, 10):
            raise CheckFailed(
                f"get_model({name!r}) gives outputs of shape {tuple(out.shape)} for 2 images, expected (2, 10)"
            )
        del model
