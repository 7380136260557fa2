"""INT8 accuracy search (`--int8-budget`): budget kept on val, test never read, recipe recorded and reused, exit 3.

Tiny MobileNetV2 from test_export.py on coloured-square images, with train/val/test splits. One run is made
quantization-hostile on purpose: a constant outlier of 100,000 is added to one channel of the last residual
block and the next conv ignores that channel, so FP32 answers are unchanged while MinMax INT8 of that
tensor loses nearly all resolution; only keeping the right layers in float brings the accuracy back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from test_export import ARCH_KWARGS, CLASSES, _card, _train_briefly, _write_images
from tledge.card import card_from_onnx
from tledge.checkpoint import save_checkpoint
from tledge.cli import main
from tledge.errors import ExportOptionError
from tledge.exporting import int8_search
from tledge.exporting.int8_recipe import RECIPE_FILE, load_recipe
from tledge.exporting.int8_search import parse_candidates
from tledge.exporting.pipeline import export_run
from tledge.exporting.sensitivity import group_key, kl_to_reference
from tledge.splits import Splits
from tledge.models.backbones import create_model


def _make_run(base: Path, hostile: bool, with_val: bool = True) -> Path:
    data = base / "data"
    train = _write_images(data, "train", 16, seed=1)
    val = _write_images(data, "val", 12, seed=3) if with_val else []
    test = _write_images(data, "test", 8, seed=2)
    run = base / "run"
    run.mkdir(parents=True)
    Splits(str(data), CLASSES, {"train": train, "val": val, "test": test}).save(run)
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 3, **ARCH_KWARGS)
    _train_briefly(model, data, train)
    if hostile:
        with torch.no_grad():
            model.features[3].conv[3].bias[0] += 1e5  # outlier channel in the residual stream...
            model.features[4][0].weight[:, 0] = 0.0  # ...that the next conv ignores: FP32 answers unchanged
    save_checkpoint(run / "best.pt", {"card": _card().to_dict(), "model": model.state_dict(), "epoch": 0})
    return run


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("hostile"), hostile=True)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("plain"), hostile=False)


class LoadRecorder(logging.Handler):
    """Wraps tledge.preprocess.load_image everywhere it is used; notes which phase read which file (the
    export's `parity:` log line starts the parity phase)."""

    def __init__(self, monkeypatch):
        import tledge.preprocess as preprocess_mod

        super().__init__()
        self.phase = "search"
        self.reads: list[tuple[str, Path]] = []
        real = preprocess_mod.load_image

        def recording(path):
            self.reads.append((self.phase, Path(path).resolve()))
            return real(path)

        monkeypatch.setattr(preprocess_mod, "load_image", recording)  # every reader goes through load_batch

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("parity:"):
            self.phase = "parity"

    def read_in(self, phase: str) -> set[Path]:
        return {p for ph, p in self.reads if ph == phase}


@pytest.fixture(scope="module")
def searched(hostile_run, tmp_path_factory):
    """One searched export of the hostile run (both flavours), with every image read recorded."""
    mp = pytest.MonkeyPatch()
    recorder = LoadRecorder(mp)
    out = tmp_path_factory.mktemp("searched")
    logger = logging.getLogger("tledge")
    logger.addHandler(recorder)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        # 8 test images cannot show a 1-point budget either way (inconclusive): the gate is widened here, the
        # search is what these tests look at.
        result = export_run(hostile_run, "int8", out, int8_flavours="both", int8_budget=1.0, int8_methods="minmax",
                            int8_search="full", tolerance="int8=100")
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
        mp.undo()
    return result, recorder, out


# ----------------------------------------------------------------------------------------- units
def test_candidates_group_keys_and_kl():
    assert parse_candidates("minmax, percentile:99.99,entropy,minmax") == [
        ("minmax", None), ("percentile", 99.99), ("entropy", None)]
    assert parse_candidates("percentile")[0] == ("percentile", 99.999)
    for bad in ("bogus", "minmax:99", "percentile:20", ""):
        with pytest.raises(ExportOptionError):
            parse_candidates(bad)
    assert group_key("/features/features.3/conv/conv.0/conv.0.0/Conv") == "features.3"
    assert group_key("/head/Gemm") == "head" and group_key("/pool/GlobalAveragePool") == "pool"
    z = np.random.default_rng(0).standard_normal((5, 3))
    assert kl_to_reference(z, z) == pytest.approx(0.0, abs=1e-12) and kl_to_reference(z, -z) > 0


def test_hostile_model_is_fp32_exact_but_int8_minmax_breaks(searched):
    result, _, _ = searched
    steps = card_from_onnx(result.path("int8")).extra["int8"]["search"]["steps"]
    assert steps[0]["stage"] == "calibration" and steps[0]["val_drop"] > 1.0  # plain MinMax is over budget


# ----------------------------------------------------------------------------------------- search
def test_search_keeps_the_budget_on_val_and_never_reads_test(searched, hostile_run):
    result, recorder, out = searched
    splits = Splits.load(hostile_run)
    test = {p.resolve() for p in splits.paths("test")}
    val = {p.resolve() for p in splits.paths("val")}
    read_before_parity = recorder.read_in("search")
    assert not (read_before_parity & test), "the search opened test images"
    assert val <= read_before_parity  # it judged on val...
    assert test <= recorder.read_in("parity")  # ...and the final parity ran on test

    search = card_from_onnx(result.path("int8")).extra["int8"]["search"]
    assert search["fits"] is True and search["budget_pt"] == 1.0
    assert search["val_source"].startswith("val split of")
    final = [s for s in search["steps"] if s["fits"]][0]
    assert final["stage"] == "fallback" and final["val_drop"] <= 1.0
    assert search["groups_in_float"] and search["nodes_excluded"]
    assert search["sensitivity"] and all("kl" in s for s in search["sensitivity"])
    for s in search["steps"]:
        assert 0 <= s["agreement"] <= 100 and s["drop_low"] <= s["val_drop"] <= s["drop_high"]
        assert "latency_ms" not in s  # latency is not part of the decision


def test_both_flavours_get_the_same_exclusions_and_the_report(searched):
    result, _, out = searched
    cpu = card_from_onnx(result.path("int8")).extra["int8"]
    trt = card_from_onnx(result.path("int8-trt")).extra["int8"]
    assert cpu["flavour"] == "u8s8" and trt["flavour"] == "s8s8"
    assert cpu["nodes_excluded"] == trt["nodes_excluded"] == cpu["search"]["nodes_excluded"]
    assert cpu["method"] == trt["method"] == cpu["search"]["method"]
    graph_nodes = {n.name: n for n in onnx.load(str(result.path("int8"))).graph.node}
    assert all(name in graph_nodes for name in cpu["nodes_excluded"])  # still there, in float
    report = (out / "int8_report.md").read_text()
    assert "## Search (val split)" in report and "## Final parity (test split)" in report
    assert "sensitivity" in report.lower() and "Δacc 95% pt" in report and "Calibration passes" in report
    recipe = json.loads((out / RECIPE_FILE).read_text())
    assert recipe["nodes_to_exclude"] == cpu["nodes_excluded"]
    assert all(r.parity is not None and r.parity.passed for r in result.rows)


@pytest.mark.parametrize("source", ["json", "onnx"])
def test_reexport_reproduces_the_exclusions_without_searching(searched, hostile_run, tmp_path, monkeypatch, source):
    result, _, out = searched
    recipe_file = out / RECIPE_FILE if source == "json" else result.path("int8")

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(int8_search, "search_int8", no_search)
    again = export_run(hostile_run, "int8", tmp_path / "again", int8_recipe=recipe_file, tolerance="int8=100")
    before = card_from_onnx(result.path("int8")).extra["int8"]
    after = card_from_onnx(again.path("int8")).extra["int8"]
    assert after["nodes_excluded"] == before["nodes_excluded"] and after["method"] == before["method"]
    assert after["recipe_source"] == str(recipe_file) and "search" not in after
    assert load_recipe(recipe_file)["nodes_to_exclude"] == before["nodes_excluded"]
    assert again.rows[0].parity.passed


def test_default_search_stops_at_the_cheapest_fit_and_full_tries_all(plain_run, tmp_path):
    # A budget no candidate can miss (100 pt), so no assertion depends on one CPU's integer kernels.
    quick = export_run(plain_run, "int8", tmp_path / "quick", int8_budget=100.0,
                       int8_methods="minmax,percentile:99.99,entropy", tolerance="int8=100")
    search = card_from_onnx(quick.path("int8")).extra["int8"]["search"]
    assert search["mode"] == "budget" and search["fits"] and not search["sensitivity"]
    assert [s["label"] for s in search["steps"]] == ["minmax"]  # cheapest first, stop at the first fit
    assert "histogram pass" not in search["calibration_seconds"]  # nothing needed a histogram
    full = export_run(plain_run, "int8", tmp_path / "full", int8_budget=100.0, int8_search="full",
                      int8_methods="minmax,percentile:99.99,entropy", tolerance="int8=100")
    search = card_from_onnx(full.path("int8")).extra["int8"]["search"]
    assert [s["label"] for s in search["steps"]] == ["minmax", "percentile 99.99", "entropy"]
    chosen = next(s for s in search["steps"] if s["method"] == search["method"])
    assert chosen["agreement"] == max(s["agreement"] for s in search["steps"]) and search["mode"] == "full"
    assert "histogram pass" in search["calibration_seconds"]  # one pass served percentile and entropy


def test_default_export_searches_with_the_parity_budget(plain_run, tmp_path):
    result = export_run(plain_run, "int8", tmp_path / "o", tolerance="int8=100")
    search = card_from_onnx(result.path("int8")).extra["int8"]["search"]
    assert search["budget_pt"] == 100.0 and search["mode"] == "budget" and len(search["steps"]) == 1


def test_a_val_split_too_small_for_the_budget_does_not_search_noise(plain_run, tmp_path, capsys):
    # 36 val images resolve ~9.6 pt, not 1 pt: when the cheapest candidate is not shown over, the default search
    # keeps it instead of choosing among candidates by single images.
    out = tmp_path / "o"
    code = main(["export", str(plain_run), "--formats", "int8", "--out", str(out), "--int8-budget", "1",
                 "--tolerance", "int8=100"])
    captured = capsys.readouterr()
    assert code == 0 and "cannot resolve a 1-pt budget" in captured.out
    assert captured.out.count("    calibration ") == 1 and "    calibration minmax" in captured.out  # one probe
    assert card_from_onnx(out / "model.int8.onnx").extra["int8"]["search"]["val_verdict"] == "inconclusive"


def test_a_small_val_split_that_shows_the_cheapest_over_searches_on_and_writes_the_best(hostile_run, tmp_path,
                                                                                        capsys):
    # The hostile model's MinMax INT8 is so broken that even 36 val images show it over budget (Δacc -66.67 pt,
    # 95% -79.79 to -50.33): the search goes on (every calibration, then layers in float) instead of stopping,
    # and the best candidate is written with its verdict; 24 test images then cannot settle it: exit 4.
    out = tmp_path / "o"
    code = main(["export", str(hostile_run), "--formats", "int8", "--out", str(out)])
    captured = capsys.readouterr()
    assert "minmax is shown over the budget even on 36 val images; searching on" in captured.out
    assert "    calibration entropy" in captured.out and "+ features.4 in float" in captured.out
    assert "(Δacc -66.67 pt, 95% -79.79 to -50.33)" in captured.out  # the sign every table uses
    assert code == 4 and "parity inconclusive" in captured.err
    search = card_from_onnx(out / "model.int8.onnx").extra["int8"]["search"]
    assert search["groups_in_float"] == ["features.3", "features.4"] and search["val_verdict"] == "inconclusive"


def test_too_few_parity_images_exit_4_with_the_number_needed(plain_run, tmp_path, capsys):
    # FP32 ONNX agrees with PyTorch on every image on any CPU; a 99.9% agreement gate judged on 24 test images
    # (Wilson lower bound 86.2%) cannot say "within": exit 4, with n/(n+z²) ≥ 0.999 → 3,838 images.
    out = tmp_path / "o"
    code = main(["export", str(plain_run), "--formats", "onnx", "--out", str(out), "--tolerance", "onnx.agreement=99.9"])
    err = capsys.readouterr().err
    assert code == 4
    assert "parity inconclusive" in err and "pass --parity-data with at least 3,838 labelled images" in err
    report = json.loads((out / "parity.json").read_text())
    assert report["outcome"] == "inconclusive" and report["results"][0]["images_needed"] == 3838
    assert report["results"][0]["agreement_ci"][0] == pytest.approx(86.2, abs=0.05)


def test_impossible_budget_exits_3_and_explains_each_step(hostile_run, tmp_path, capsys):
    # -50 pt (INT8 fifty points better than FP32): 12 val images are enough to show that is out of reach.
    out = tmp_path / "o"
    code = main(["export", str(hostile_run), "--formats", "int8", "--out", str(out), "--int8-budget", "-50",
                 "--int8-methods", "minmax", "--int8-max-groups", "2", "--int8-search", "full"])
    err = capsys.readouterr().err
    assert code == 3
    assert "cannot meet the -50-point budget" in err
    assert "calibration minmax" in err and "fallback" in err and "--qat-epochs" in err
    # written anyway, for the user to inspect, and its card says what the val data showed
    assert card_from_onnx(out / "model.int8.onnx").extra["int8"]["search"]["val_verdict"] == "over"
    assert "does not fit" in (out / "int8_report.md").read_text()


def test_nothing_to_fall_back_on_is_said(plain_run, tmp_path, capsys, monkeypatch):
    # Whether a block of a tiny model does "measurable damage" alone depends on the CPU's integer kernels
    # (AVX2 without VNNI rounds differently), so the sensitivity is fixed here: no group does any.
    import tledge.exporting.sensitivity as sensitivity

    def harmless(groups, evaluate, reference):
        return [sensitivity.Sensitivity(g.name, len(g.nodes), g.macs, 0.0, 100.0, 0.0) for g in groups]

    monkeypatch.setattr(sensitivity, "measure_sensitivity", harmless)
    code = main(["export", str(plain_run), "--formats", "int8", "--out", str(tmp_path / "o"), "--int8-budget", "-50",
                 "--int8-methods", "minmax", "--int8-search", "full"])
    assert code == 3 and "no single layer group does measurable damage" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--int8-budget", "1", "--calib-method", "entropy"], "--calib-method fixes them"),
    (["--int8-search", "full", "--exclude-nodes", "x"], "--exclude-nodes fixes them"),
    (["--int8-search", "off", "--int8-methods", "minmax"], "belong to the INT8 search"),
    (["--int8-budget", "1", "--int8-methods", "bogus"], "unknown method"),
    (["--int8-recipe", "{nope}"], "file not found"),
    (["--qat-lr", "0.01"], "give --qat-epochs"),
])
def test_option_errors_exit_2(plain_run, tmp_path, capsys, extra, message):
    argv = ["export", str(plain_run), "--formats", "int8", "--out", str(tmp_path / "o")]
    code = main(argv + [a.format(nope=tmp_path / "nope.json") for a in extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err


def test_budget_needs_a_val_split(tmp_path, capsys):
    run = _make_run(tmp_path, hostile=False, with_val=False)
    code = main(["export", str(run), "--formats", "int8", "--out", str(tmp_path / "o"), "--int8-budget", "1"])
    assert code == 2 and "val split" in capsys.readouterr().err
    # Without asking for it, no val split means plain calibration, and the note says so.
    code = main(["export", str(run), "--formats", "int8", "--out", str(tmp_path / "p"), "--tolerance", "int8=100"])
    captured = capsys.readouterr()
    assert code == 0 and "no val split to judge INT8 on" in captured.out


def test_budget_is_an_int8_option(plain_run, tmp_path, capsys):
    code = main(["export", str(plain_run), "--formats", "onnx", "--out", str(tmp_path / "o"), "--int8-budget", "1"])
    assert code == 2 and "--int8-budget applies to int8" in capsys.readouterr().err
