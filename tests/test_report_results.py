"""The results quoted in REPORT.md 2.4 and in the README are those of the committed JSON assets.

Every number and sample in those places is read back from the report text and compared with
``assets/part2/grimm_metrics.json`` and ``grimm_samples.json``, so rerunning an experiment without
updating the text (or editing the text by hand) fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = (ROOT / "REPORT.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
METRICS = json.loads((ROOT / "assets/part2/grimm_metrics.json").read_text(encoding="utf-8"))
SAMPLES = json.loads((ROOT / "assets/part2/grimm_samples.json").read_text(encoding="utf-8"))


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"^#{1,3} ", text[start + len(heading) :], flags=re.M)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


def texts(epoch: int, temperature: float, length: int) -> list[str]:
    (entry,) = [e for e in SAMPLES if e["epoch"] == epoch]
    (record,) = [r for r in entry["records"] if r["temperature"] == temperature and r["length"] == length]
    return record["texts"]


def table_row(text: str, label: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")[1:]]


def has_loop(sample: str, width: int = 25) -> bool:
    """Whether some stretch of ``width`` characters occurs twice (the decoder went round a cycle)."""
    windows = [sample[i : i + width] for i in range(len(sample) - width + 1)]
    return len(set(windows)) < len(windows)


SECTION_24 = section(REPORT, "### 2.4 Text generation")


def test_the_epoch_table_matches_the_metrics() -> None:
    epochs = [int(cell) for cell in table_row(SECTION_24, "epoch")]
    by_epoch = {e["epoch"]: e for e in METRICS["epochs"]}
    assert epochs[-1] == len(METRICS["epochs"]) == METRICS["config"]["epochs"] == 20
    for name, key in (("training loss", "loss"), ("next-character accuracy", "accuracy")):
        quoted = [float(cell) for cell in table_row(SECTION_24, name)]
        assert quoted == [round(by_epoch[e][key], 3) for e in epochs], name


def test_quoted_totals_and_settings_match_the_metrics() -> None:
    final = METRICS["epochs"][-1]
    assert f"training accuracy is {final['accuracy']:.3f} at loss {final['loss']:.3f}" in SECTION_24
    minutes = sum(e["seconds"] for e in METRICS["epochs"]) / 60
    assert f"20 epochs of {final['steps']} batches in\n{minutes:.0f} minutes" in SECTION_24
    config = METRICS["config"]
    assert (config["precision"], config["input_seq_length"], config["batch_size"]) == ("bf16", 30, 128)
    assert (config["lstm_hidden_dim"], config["embedding_size"], config["lr"], config["clip_grad_norm"]) == (
        1024,
        256,
        0.001,
        5.0,
    )


def test_the_short_samples_are_the_committed_ones_with_five_start_characters() -> None:
    for column, epoch in enumerate((1, 5, 20)):
        samples = texts(epoch, 0.0, 30)
        assert len({s[0] for s in samples}) == 5
        quoted = [
            row.split("|")[column + 1].strip().strip("`").replace("\\|", "|")
            for row in SECTION_24.split("| after epoch 1 |")[1].splitlines()[2:7]
        ]
        assert quoted == [s.replace("\n", "↵") for s in samples]


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_the_temperature_samples_are_the_committed_ones(temperature: float) -> None:
    block = "```\n" + "\n".join(s.replace("\n", "↵") for s in texts(20, temperature, 200)) + "\n```"
    assert block in SECTION_24


def test_long_greedy_samples_loop_after_epochs_1_and_5_but_not_after_20() -> None:
    assert all(has_loop(s) for epoch in (1, 5) for s in texts(epoch, 0.0, 200))
    assert not any(has_loop(s) for s in texts(20, 0.0, 200))
    assert not any(has_loop(s) for s in texts(20, 0.5, 200))  # "and no loops"


def test_readme_quotes_the_final_text_model_numbers() -> None:
    final = METRICS["epochs"][-1]
    assert f"accuracy {final['accuracy']:.3f}" in README


CNN = json.loads((ROOT / "assets/part1/ce_rce_table.json").read_text(encoding="utf-8"))
CPU_PROTOCOL = ROOT / "assets/part1/cpu_protocol"
CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "contrast", "jpeg")
SECTION_12 = section(REPORT, "### 1.2 Corruption robustness")
SIX_MODELS = ("debug", "resnet18", "resnet34", "densenet121", "vgg11", "vgg11_bn")


def errors(model: str, corruption: str) -> list[float]:
    return [1 - accuracy for accuracy in CNN[model]["corrupted_accuracy"][corruption]]


def percent(accuracy: float) -> str:
    return f"{100 * accuracy:.1f}"


def bullet_after(marker: str) -> str:
    """The text of REPORT 1.2 from ``marker`` to the end of its bullet (the next line starting "- ")."""
    return SECTION_12.split(marker)[1].split("\n- ")[0]


def added_points(result: dict, corruption: str) -> str:
    """Points of error the corruption adds, summed over the five severities, as the report quotes them."""
    return f"{sum(result['clean_accuracy'] - a for a in result['corrupted_accuracy'][corruption]) * 100:.1f}"


def test_the_report_table_is_built_from_every_committed_run() -> None:
    runs = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in CPU_PROTOCOL.glob("*.json")}
    assert sorted(runs) == sorted(CNN)  # a run added without rerunning part1.report fails here
    for model, run in runs.items():
        assert run["clean_accuracy"] == CNN[model]["clean_accuracy"]
        assert run["corrupted_accuracy"] == CNN[model]["corrupted_accuracy"]
        assert run["num_test_images"] == 10_000 and run["config"]["train_subset"] is None


def test_the_report_names_the_finished_and_the_pending_models() -> None:
    finished = re.search(r"models finished: ([\w, ]+)\.\*\*", SECTION_12).group(1).split(", ")
    assert sorted(finished) == sorted(CNN)
    pending = re.search(r"Still to run: ([\w, ]+) \(", SECTION_12)
    assert sorted(pending.group(1).split(", ") if pending else []) == sorted(set(SIX_MODELS) - set(CNN))


def test_the_runs_table_matches_the_results() -> None:
    runs_table = SECTION_12.split("**Runs**")[1].split("**Definitions.**")[0]
    for model, result in CNN.items():
        low, high = result["clean_interval"]
        assert table_row(runs_table, model) == [
            str(result["config"]["epochs"]),
            f"{result['train_seconds'] / 60:.1f}",
            f"{percent(result['clean_accuracy'])} [{percent(low)}, {percent(high)}]",
            f"{result['mce']:.3f}",
            f"{result['relative_mce']:.3f}",
        ], model


def test_the_ce_rce_table_matches_the_results() -> None:
    main_table = SECTION_12.split("**(b) CE and RCE per corruption**")[1]
    for model, result in CNN.items():
        cells = [float(cell.replace("−", "-")) for cell in table_row(main_table, model)][:11]
        expected = [round(result["clean_accuracy"] * 100, 1)]
        expected += [round(result["ce"][c], 3) for c in CORRUPTIONS] + [round(result["mce"], 3)]
        expected += [round(result["rce"][c], 3) for c in CORRUPTIONS] + [round(result["relative_mce"], 3)]
        assert cells == expected, model
    unmarked = "no value is marked †" in SECTION_12
    assert unmarked == all(
        all(r["reliable"]["ce"].values()) and all(r["reliable"]["rce"].values()) for r in CNN.values()
    )


def test_the_rce_formula_stated_is_the_one_computed_and_the_printed_one_is_shown() -> None:
    base = "resnet18"
    for model in CNN:
        for c in CORRUPTIONS:
            added = sum(e - (1 - CNN[model]["clean_accuracy"]) for e in errors(model, c))
            added_base = sum(e - (1 - CNN[base]["clean_accuracy"]) for e in errors(base, c))
            assert CNN[model]["rce"][c] == pytest.approx(added / added_base)
    printed_table = SECTION_12.split("the printed form on the same data:")[1].split("**(a)")[0]
    for model in CNN:
        printed = [
            (sum(errors(model, c)) - (1 - CNN[model]["clean_accuracy"]))
            / (sum(errors(base, c)) - (1 - CNN[base]["clean_accuracy"]))
            for c in CORRUPTIONS
        ]
        assert [float(x) for x in table_row(printed_table, model)] == [round(v, 3) for v in printed]


def test_prose_claims_about_resnet18_hold_for_the_data() -> None:
    base = CNN["resnet18"]
    clean, accuracy = base["clean_accuracy"], base["corrupted_accuracy"]
    assert f"ResNet-18 reaches {percent(clean)} % in {base['config']['epochs']} epochs" in SECTION_12
    assert clean >= 0.78  # "the goal of the CPU protocol was 78 %"
    added = {c: sum(clean - a for a in accuracy[c]) * 100 for c in CORRUPTIONS}
    for c, words in (
        ("gaussian_noise", "Gaussian noise"),
        ("contrast", "Contrast"),
        ("gaussian_blur", "Gaussian blur"),
    ):
        quoted = f"{percent(accuracy[c][0])} % → {percent(accuracy[c][4])} %, adding {added[c]:.1f} points"
        assert quoted in bullet_after(f"*{words}*")
    assert max(added, key=added.get) == "contrast"  # "the most of the four"
    assert accuracy["gaussian_blur"][0] > clean and accuracy["gaussian_blur"][0] < base["clean_interval"][1]
    assert (
        added["gaussian_blur"] - sum(clean - a for a in accuracy["gaussian_blur"][3:]) * 100
        < 0.2 * added["gaussian_blur"]
    )
    jpeg = (
        f"{percent(accuracy['jpeg'][0])} % → {percent(accuracy['jpeg'][4])} %, adding only {added['jpeg']:.1f} points"
    )
    assert jpeg in SECTION_12 and min(added, key=added.get) == "jpeg"
    assert accuracy["jpeg"][3] > accuracy["jpeg"][2]  # quality 30 above quality 50
    q30, q50 = percent(accuracy["jpeg"][3]), percent(accuracy["jpeg"][2])
    assert f"at quality 30 ({q30} %) is even above that at quality 50 ({q50} %)" in SECTION_12
    assert f"ResNet-18 adds {min(added.values()):.1f} to {max(added.values()):.1f} points" in SECTION_12


def test_prose_claims_about_the_debug_model_hold_for_the_data() -> None:
    debug = CNN["debug"]
    assert f"{percent(debug['clean_accuracy'])} % clean, has an mCE of {debug['mce']:.3f}" in SECTION_12
    assert f"relative mCE is {debug['relative_mce']:.3f}" in SECTION_12
    assert all(debug["rce"][c] < 1 for c in CORRUPTIONS)  # "it loses far less accuracy ... under every corruption"
    assert debug["rce"]["gaussian_blur"] < 0 and f"RCE −{-debug['rce']['gaussian_blur']:.3f}" in SECTION_12


def _palindromes(name: str) -> dict:
    return json.loads((ROOT / "assets/part2" / f"{name}.json").read_text(encoding="utf-8"))["summary"]


PALINDROMES = _palindromes("palindromes")
RNN_UNIFORM = _palindromes("palindromes_rnn_uniform")["rnn"]
LSTM_BIAS_1 = _palindromes("palindromes_lstm_forget_bias1")["lstm"]
SECTION_PALINDROMES = section(REPORT, "### Palindromes: vanilla RNN vs LSTM")


def test_the_palindrome_table_matches_the_sweeps() -> None:
    lengths = [str(length) for length in range(5, 55, 5)]
    for label, summary in (
        ("vanilla RNN, uniform init", RNN_UNIFORM),
        ("vanilla RNN, orthogonal $W_{hh}$", PALINDROMES["rnn"]),
        ("LSTM, forget-gate bias +1", LSTM_BIAS_1),
        ("LSTM, forget-gate bias 3", PALINDROMES["lstm"]),
    ):
        accuracy_table = SECTION_PALINDROMES.split("Steps to 99 % training accuracy")[0]
        for length, cell in zip(lengths, table_row(accuracy_table, label)):
            if length not in summary:
                assert cell == "–"
                continue
            accuracy = summary[length]["accuracy"]
            assert cell == f"{summary[length]['accuracy_mean']:.3f} ({min(accuracy):.2f}–{max(accuracy):.2f})"


def test_palindrome_prose_claims_hold_for_the_sweeps() -> None:
    rnn, lstm = PALINDROMES["rnn"], PALINDROMES["lstm"]
    missed = {length: sum(a < 0.99 for a in RNN_UNIFORM[length]["accuracy"]) for length in ("10", "15")}
    assert missed == {"10": 1, "15": 2}
    assert all(a < 0.25 for length in range(20, 55, 5) for a in RNN_UNIFORM[str(length)]["accuracy"])
    assert all(a >= 0.998 for length in range(5, 40, 5) for a in rnn[str(length)]["accuracy"])
    assert [rnn[length]["steps_to_99_reached"] for length in ("40", "45", "50")] == [2, 1, 0]
    assert all(a < 0.12 for a in rnn["50"]["accuracy"])
    short = [str(length) for length in range(5, 40, 5)]
    assert round(min(rnn[L]["steps_to_99_mean"] for L in short)) == 60
    assert round(max(rnn[L]["steps_to_99_mean"] for L in short)) == 620
    assert round(min(lstm[L]["steps_to_99_mean"] for L in short)) == 160
    assert round(max(lstm[L]["steps_to_99_mean"] for L in short)) == 547
    assert all(min(LSTM_BIAS_1[L]["accuracy"]) >= 0.99 for L in ("10", "20"))
    assert all(max(LSTM_BIAS_1[L]["accuracy"]) <= 0.2 for L in ("30", "40", "50"))
    assert all(lstm[L]["steps_to_99_reached"] == 3 for L in lstm)
    assert min(min(v["accuracy"]) for v in lstm.values()) >= 0.94
    assert min(v["accuracy_mean"] for v in lstm.values()) >= 0.98
    assert f"({lstm['50']['accuracy_mean']:.3f} at $L = 50$)" in SECTION_PALINDROMES
    assert round(lstm["50"]["steps_to_99_mean"]) == 747 and lstm["5"]["steps_to_99_mean"] == 160


def test_readme_quotes_the_resnet18_run() -> None:
    base = CNN["resnet18"]
    run = f"ResNet-18 trained for {base['config']['epochs']} epochs ({base['train_seconds'] / 60:.0f} minutes, bf16)"
    assert run in README and f"reaches {percent(base['clean_accuracy'])} % clean test accuracy" in README
    at_5 = {c: 100 * base["corrupted_accuracy"][c][4] for c in CORRUPTIONS}
    noise, blur = round(at_5["gaussian_noise"]), round(at_5["gaussian_blur"])
    quoted = f"noise and contrast bring it to about {noise} %, blur to {blur} %"
    assert quoted in README and abs(at_5["gaussian_noise"] - at_5["contrast"]) < 0.5
    assert f"JPEG to {round(at_5['jpeg'])} %" in README
    assert "All six CNNs of the assignment" in README and sorted(CNN) == sorted(SIX_MODELS)
    noise = {model: result["rce"]["gaussian_noise"] for model, result in CNN.items()}
    assert "VGG-11-BN degrades the most under Gaussian noise" in README and max(noise, key=noise.get) == "vgg11_bn"


def test_prose_claims_about_vgg11_bn_against_the_published_pattern_hold_for_the_data() -> None:
    vgg, base = CNN["vgg11_bn"], CNN["resnet18"]

    assert f"VGG-11-BN reaches {percent(vgg['clean_accuracy'])} % in the {vgg['config']['epochs']} epochs" in SECTION_12
    noise, rce = vgg["corrupted_accuracy"]["gaussian_noise"], vgg["rce"]
    assert 1.4 <= rce["gaussian_noise"] <= 1.9  # "inside the published 1.4-1.9"
    vgg_noise, base_noise = added_points(vgg, "gaussian_noise"), added_points(base, "gaussian_noise")
    quoted = f"adds {vgg_noise} points of error against ResNet-18's {base_noise}"
    assert quoted in SECTION_12 and f"(RCE {rce['gaussian_noise']:.3f}" in SECTION_12
    assert f"keeps {percent(noise[4])} % of its {percent(vgg['clean_accuracy'])} %" in SECTION_12
    assert added_points(vgg, "jpeg") == added_points(base, "jpeg") and abs(rce["jpeg"] - 1) < 0.05
    assert f"add the same {added_points(base, 'jpeg')} points (RCE {rce['jpeg']:.3f})" in SECTION_12
    assert rce["contrast"] < 1 < vgg["ce"]["contrast"]  # "reproduced in RCE, not in CE"
    contrast = (
        f"({added_points(vgg, 'contrast')} against {added_points(base, 'contrast')} points, RCE {rce['contrast']:.3f})"
    )
    assert contrast in SECTION_12 and f"its CE is {vgg['ce']['contrast']:.3f}" in SECTION_12
    gap = f"{percent(base['clean_accuracy'] - vgg['clean_accuracy'])} points lower clean accuracy"
    assert gap in SECTION_12
    blur = f"({added_points(vgg, 'gaussian_blur')} against {added_points(base, 'gaussian_blur')} points, "
    blur += f"RCE {rce['gaussian_blur']:.3f})"
    assert blur in SECTION_12 and abs(rce["gaussian_blur"] - 1) < 0.1  # "about the same"


def test_prose_claims_about_densenet121_hold_for_the_data() -> None:
    dense, base = CNN["densenet121"], CNN["resnet18"]
    clean = dense["clean_accuracy"]
    assert f"DenseNet-121 reaches {percent(clean)} % in {dense['config']['epochs']} epochs, short of" in SECTION_12
    assert clean < 0.78 and f"it\ntrained {dense['train_seconds'] / 60:.1f} of its 40 minutes" in SECTION_12
    assert all(dense["rce"][c] > 1 for c in CORRUPTIONS)  # "more than ResNet-18 under every corruption"
    assert max(dense["rce"], key=dense["rce"].get) == "contrast"
    assert f"(relative mCE {dense['relative_mce']:.3f})" in SECTION_12
    added = {c: added_points(dense, c) for c in CORRUPTIONS}
    contrast = f"adds {added['contrast']} points of error against ResNet-18's {added_points(base, 'contrast')}"
    assert contrast in SECTION_12 and f"(RCE {dense['rce']['contrast']:.3f})" in SECTION_12
    assert f"keeps {percent(dense['corrupted_accuracy']['contrast'][4])} % at severity 5" in SECTION_12
    assert base["clean_accuracy"] - clean < 0.02  # "within 2 points of ResNet-18's"
    tail = bullet_after("so here CE and RCE agree.")
    assert [m for m in re.findall(r"(\d+\.\d) (?:points )?\(RCE (\d\.\d{3})\)", tail)] == [
        (added[c], f"{dense['rce'][c]:.3f}") for c in ("gaussian_noise", "gaussian_blur", "jpeg")
    ]


def test_prose_claims_about_depth_hold_for_the_data() -> None:
    deep, base = CNN["resnet34"], CNN["resnet18"]
    clean = deep["clean_accuracy"]
    assert f"ResNet-34 reaches {percent(clean)} % in {deep['config']['epochs']} epochs (goal 75 %" in SECTION_12
    assert clean >= 0.75
    gap = f"clean accuracy is {percent(base['clean_accuracy'] - clean)} points below ResNet-18's"
    assert gap in SECTION_12 and all(deep["ce"][c] > 1 for c in CORRUPTIONS)
    assert f"(mCE {deep['mce']:.3f})" in SECTION_12 and f"(relative mCE {deep['relative_mce']:.3f})" in SECTION_12
    depth = bullet_after("*Depth (ResNet-18 → ResNet-34)")

    quoted = re.findall(r"(\d+\.\d)(?: points)? against (\d+\.\d) \(RCE (\d\.\d{3})\)", " ".join(depth.split()))
    order = ("gaussian_noise", "gaussian_blur", "jpeg", "contrast")
    assert quoted == [(added_points(deep, c), added_points(base, c), f"{deep['rce'][c]:.3f}") for c in order]
    assert all(deep["rce"][c] < 1 for c in order[:3]) and deep["rce"]["contrast"] > 1  # "only contrast adds more"
    at_5 = [abs(deep["corrupted_accuracy"][c][4] - base["corrupted_accuracy"][c][4]) for c in CORRUPTIONS]
    assert max(at_5) < 0.01  # "within 1 point of each other under all four corruptions"


def test_prose_claims_about_vgg11_hold_for_the_data() -> None:
    vgg, base = CNN["vgg11"], CNN["resnet18"]
    assert f"VGG-11 {percent(vgg['clean_accuracy'])} % in its {vgg['config']['epochs']} (the goal exactly" in SECTION_12
    low, high = vgg["clean_interval"]
    assert low < 0.70 < high and round(vgg["clean_accuracy"], 3) == 0.700  # "with an interval on both sides of it"
    bullet = " ".join(bullet_after("*VGG-11 without batch normalisation*").split())
    quoted = re.findall(r"\((\d+\.\d) against (\d+\.\d)(?: points)?, RCE (\d\.\d{3})", bullet)
    order = ("gaussian_noise", "contrast", "gaussian_blur", "jpeg")
    assert quoted == [(added_points(vgg, c), added_points(base, c), f"{vgg['rce'][c]:.3f}") for c in order]
    assert 1 < vgg["rce"]["gaussian_noise"] < 1.4  # "more than ResNet-18 ... below the published 1.4-1.9"
    assert all(vgg["rce"][c] < 1 for c in order[1:])  # "and less under contrast, blur and JPEG"


def test_prose_claims_about_batch_normalisation_hold_for_the_data() -> None:
    plain, bn = CNN["vgg11"], CNN["vgg11_bn"]
    assert bn["config"]["epochs"] == plain["config"]["epochs"] == 5  # "in the same 5 epochs"
    bullet = " ".join(bullet_after("*Batch normalisation (VGG-11 → VGG-11-BN)").split())
    assert f"gains {percent(bn['clean_accuracy'] - plain['clean_accuracy'])} points of clean accuracy" in bullet
    bn_noise, plain_noise = added_points(bn, "gaussian_noise"), added_points(plain, "gaussian_noise")
    noise = f"adds {bn_noise} points of error to it against {plain_noise}"
    assert noise in bullet and bn["rce"]["gaussian_noise"] > plain["rce"]["gaussian_noise"]
    assert f"(RCE {bn['rce']['gaussian_noise']:.3f} against {plain['rce']['gaussian_noise']:.3f})" in bullet
    at_5 = {name: r["corrupted_accuracy"]["gaussian_noise"][4] for name, r in (("bn", bn), ("plain", plain))}
    assert f"keeps {percent(at_5['bn'])} % against VGG-11's {percent(at_5['plain'])} %" in bullet
    assert at_5["bn"] < at_5["plain"]  # "the gain is lost and more"
    alike = f"({added_points(bn, 'gaussian_blur')} against {added_points(plain, 'gaussian_blur')} and "
    alike += f"{added_points(bn, 'contrast')} against {added_points(plain, 'contrast')} points)"
    assert alike in bullet
    assert all(
        abs(float(added_points(bn, c)) - float(added_points(plain, c))) < 1.5 for c in ("gaussian_blur", "contrast")
    )
    assert (
        f"({added_points(bn, 'jpeg')} against {added_points(plain, 'jpeg')})" in bullet
        and bn["rce"]["jpeg"] > plain["rce"]["jpeg"]
    )
