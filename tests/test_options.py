"""Options defined once: ranges checked up front for every verb (one line, exit 2, nothing written), the click
options generated from the options objects, docs/reference.md's tables generated from them, old config.json
loadable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import tledge
from tledge.cli import cli, main
from tledge.errors import TledgeError
from tledge.exporting.options import ExportOptions
from tledge.cli.option_tables import JOBS, REFERENCE, document_table, options_class, render
from tledge.options import click_options, options_of, validate
from tledge.runtime.options import BenchOptions, PredictRequest
from tledge.demo import DemoOptions
from tledge.training.config import ResumeOptions, TrainConfig
from tledge.training.eval_options import EvalOptions

REFERENCE_MD = Path(__file__).resolve().parents[1] / REFERENCE

# (argv after the verb's fixed arguments, text the one-line error must contain)
TRAIN_CASES = [
    (["--img-size", "0"], "--img-size 0: must be at least 8"),
    (["--lr", "-1"], "--lr -1.0: must be greater than 0"),
    (["--lr", "0"], "--lr 0.0: must be greater than 0"),
    (["--dropout", "1.5"], "--dropout 1.5: must be less than 1"),
    (["--width-mult", "0"], "--width-mult 0.0: must be greater than 0"),
    (["--label-smoothing", "1"], "--label-smoothing 1.0: must be less than 1"),
    (["--label-smoothing", "-0.1"], "--label-smoothing -0.1: must be at least 0"),
    (["--workers", "-1"], "--workers -1: must be at least 0"),
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--momentum", "1"], "--momentum 1.0: must be less than 1"),
    (["--gamma", "0"], "--gamma 0.0: must be greater than 0"),
    (["--kfold", "1"], "--kfold 1: must be 0 (off) or at least 2"),
    (["--split", "0.5,0.5,0.5"], "sum to 1"),
    (["--split", "abc"], "--split"),
    (["--device", "gpu"], "--device 'gpu'"),
    (["--model", "resnet181"], "resnet18"),  # registry check, still before any folder
    (["--freeze", "half"], "--freeze 'half'"),
]
EXPORT_CASES = [
    (["--opset", "99"], "--opset 99: must be at most 23"),
    (["--opset", "5"], "--opset 5: must be at least 13"),
    (["--opset", "21", "--exporter", "torchscript"], "torchscript exporter writes opset ≤ 20"),
    (["--batch", "0"], "--batch 0: must be at least 1"),
    (["--formats", "trt-fp16", "--batch", "8", "--max-batch", "4"], "--batch ≤ --max-batch"),
    (["--calib-percentile", "0"], "--calib-percentile 0.0: must be greater than 0"),
    (["--int8-budget", "101"], "--int8-budget 101.0: must be at most 100"),
    (["--qat-epochs", "0"], "--qat-epochs 0: must be at least 1"),
    (["--formats", "onnx,tflite"], "unknown export format 'tflite'"),
]
PREDICT_CASES = [
    (["--topk", "0"], "--topk 0: must be at least 1"),
    (["--batch", "0"], "--batch 0: must be at least 1"),
    (["--max-frames", "0"], "--max-frames 0: must be at least 1"),
    (["--warmup", "-1"], "--warmup -1: must be at least 0"),
    (["--workers", "0"], "--workers 0: must be at least 1"),
    (["--threads", "0"], "--threads 0: must be at least 1"),
]
BENCH_CASES = [
    (["--iters", "0"], "--iters 0: must be at least 1"),
    (["--batch", "0,1"], "batch sizes must be positive"),
    (["--batch", "x"], "expected comma-separated integers"),
    (["--min-time", "-1"], "--min-time -1.0: must be at least 0"),
    (["--warmup", "-2"], "--warmup -2: must be at least 0"),
]


EVAL_CASES = [
    (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--device", "gpu"], "--device 'gpu': must be auto, cpu, cuda or cuda:N"),
    (["--device", "cuda:x"], "--device 'cuda:x'"),
]
DEMO_CASES = [
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--img-size", "4097"], "--img-size 4097: must be at most 4096"),
    (["--bench-iters", "0"], "--bench-iters 0: must be at least 1"),
    (["--formats", "onnx,tflite"], "unknown export format 'tflite'"),
]


def _one_line_error(capsys, code: int, expected: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


@pytest.mark.parametrize("args, expected", TRAIN_CASES)
def test_train_ranges_fail_before_any_folder(args, expected, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    project = tmp_path / "runs"
    code = main(["train", str(data), "--project", str(project), *args])
    _one_line_error(capsys, code, expected)
    assert not project.exists()


@pytest.mark.parametrize("args, expected", EXPORT_CASES)
def test_export_ranges_fail_before_any_file(args, expected, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"never read: the options fail first")
    code = main(["export", str(run), *args])
    _one_line_error(capsys, code, expected)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt"]


@pytest.mark.parametrize("args, expected", PREDICT_CASES)
def test_predict_ranges(args, expected, tmp_path, capsys):
    json_path = tmp_path / "out.jsonl"
    code = main(["predict", str(tmp_path / "model.onnx"), str(tmp_path), "--json", str(json_path), *args])
    _one_line_error(capsys, code, expected)
    assert not json_path.exists()


@pytest.mark.parametrize("args, expected", BENCH_CASES)
def test_bench_ranges(args, expected, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", str(tmp_path / "model.onnx"), "--out", str(out), *args])
    _one_line_error(capsys, code, expected)
    assert not out.exists()


def test_sweep_grid_values_go_through_the_train_ranges(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    project = tmp_path / "runs"
    code = main(["sweep", str(data), "--img-size", "32,0", "--project", str(project)])
    _one_line_error(capsys, code, "--img-size 0: must be at least 8")
    code = main(["sweep", str(data), "--lr", "0.1,-3", "--project", str(project)])
    _one_line_error(capsys, code, "--lr -3.0: must be greater than 0")
    assert not project.exists()


def test_api_errors_are_value_errors_raised_before_anything_is_written(tmp_path):
    project = tmp_path / "runs"
    with pytest.raises(ValueError, match="--img-size 0: must be at least 8"):
        tledge.train(tmp_path, img_size=0, project=str(project))
    with pytest.raises(TledgeError, match="unknown train option 'imgsize'; did you mean img_size"):
        tledge.train(tmp_path, imgsize=64, project=str(project))
    with pytest.raises(TledgeError, match="--opset 99: must be at most 23"):
        tledge.export(tmp_path / "nowhere", formats=["onnx"], opset=99)
    with pytest.raises(TledgeError, match="--iters 0"):
        tledge.bench(tmp_path / "model.onnx", iters=0)
    assert not project.exists()
    assert issubclass(TledgeError, ValueError)


def test_numbers_of_the_wrong_type_are_refused():
    with pytest.raises(TledgeError, match="--epochs 2.5: must be a whole number"):
        TrainConfig(data="d", epochs=2.5)
    with pytest.raises(TledgeError, match="--lr 'fast': must be a number"):
        TrainConfig(data="d", lr="fast")
    with pytest.raises(TledgeError, match="--lr nan: must be a finite number"):
        TrainConfig(data="d", lr=float("nan"))
    with pytest.raises(TledgeError, match="--head 'mpl': must be one of linear, mlp .did you mean mlp"):
        TrainConfig(data="d", head="mpl")
    assert TrainConfig(data="d", lr=1).lr == 1 and TrainConfig(data="d", width_mult=0.5).arch_kwargs == {
        "width_mult": 0.5}


@pytest.mark.parametrize("command, cls", [("train", TrainConfig), ("train", ResumeOptions), ("eval", EvalOptions),
                                          ("demo", DemoOptions), ("export", ExportOptions),
                                          ("predict", PredictRequest), ("bench", BenchOptions)])
def test_cli_options_are_generated_from_the_options_object(command, cls):
    params = {p.name: p for p in cli.commands[command].params}
    for opt in options_of(cls):
        if not opt.spec.cli:  # Python-only (arch_kwargs), or positional (train's DATA)
            assert opt.name not in params or isinstance(params[opt.name], click.Argument)
            continue
        param = params[opt.name]
        if not opt.spec.argument:
            assert opt.flag in param.opts
        assert param.help == opt.spec.help or opt.spec.argument or param.help.startswith(opt.spec.help)


def test_choices_match_the_registries():
    from tledge.training import augment, optim
    from tledge.models import backbones
    from tledge.training import config

    assert set(config.OPTIMIZERS) == set(optim.OPTIMIZERS)
    assert set(config.SCHEDULERS) == set(optim.SCHEDULERS)
    assert set(config.AUGMENT_LEVELS) == set(augment.LEVELS)
    assert set(config.HEADS) == set(backbones.HEADS)


def test_defaults_parse_and_validate():
    for job in JOBS:
        cls = options_class(job)
        required = {f.name: "x" for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        validate(cls(**required))


@pytest.mark.parametrize("job", list(JOBS))
def test_reference_option_tables_match_the_options_objects(job):
    table = document_table(REFERENCE_MD.read_text(encoding="utf-8"), job)
    assert table is not None, f"{REFERENCE} has no <!-- options:{job} --> block"
    assert table == render(job), f"{REFERENCE} is stale: run python scripts/readme_options.py"


def test_old_config_json_still_loads():
    old = {"data": "d", "model": "mobilenet_v2", "arch_kwargs": {"width_mult": 0.25}, "split": [0.7, 0.15, 0.15],
           "epochs": 3, "removed_option": 1}
    config = TrainConfig.from_dict(old)
    assert config.width_mult == 0.25 and config.split == (0.7, 0.15, 0.15) and config.epochs == 3
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_click_parses_negated_flags_and_lists():
    runner = CliRunner()
    seen = {}

    @click.command()
    @click_options(TrainConfig)
    def probe(**values):
        seen.update(values)

    assert runner.invoke(probe, ["--no-amp", "--split", "0.6,0.2,0.2"]).exit_code == 0
    assert seen["amp"] is False and seen["cache_features"] is True and seen["split"] == (0.6, 0.2, 0.2)


def _required(cls) -> dict:
    return {f.name: "x" for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def _boundary_cases(opt):
    """(value, accepted) pairs just inside and just outside each declared bound of a numeric option."""
    step = 1 if opt.base_type is int else 1e-6
    spec = opt.spec
    if spec.min is not None:
        yield spec.min, True
        yield spec.min - step, False
    if spec.max is not None:
        yield spec.max, True
        yield spec.max + step, False
    if spec.above is not None:
        yield spec.above, False
        yield spec.above + step, True
    if spec.below is not None:
        yield spec.below, False
        yield spec.below - step, True


@pytest.mark.parametrize("job", list(JOBS))
def test_every_declared_bound_is_enforced_at_its_edge(job):
    cls = options_class(job)
    checked = 0
    for opt in options_of(cls):
        if opt.base_type not in (int, float):
            continue
        for value, accepted in _boundary_cases(opt):
            value = int(value) if opt.base_type is int else float(value)
            if accepted:
                assert getattr(cls(**_required(cls), **{opt.name: value}), opt.name) == value
            else:
                with pytest.raises(TledgeError, match=f"^{opt.flag} "):
                    cls(**_required(cls), **{opt.name: value})
            checked += 1
    assert checked >= {"sweep": 1, "resume": 0, "info": 0}.get(job, 2)  # resume and info have no numbers


@pytest.mark.parametrize("args, expected", EVAL_CASES)
def test_eval_ranges_fail_before_any_file(args, expected, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"never read: the options fail first")
    code = main(["eval", str(run), "--json", str(tmp_path / "m.json"), *args])
    _one_line_error(capsys, code, expected)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["best.pt", "run"]


@pytest.mark.parametrize("args, expected", DEMO_CASES)
def test_demo_ranges_fail_before_any_folder(args, expected, tmp_path, capsys):
    project = tmp_path / "runs"
    code = main(["demo", "--project", str(project), *args])
    _one_line_error(capsys, code, expected)
    assert not project.exists()


@pytest.mark.parametrize("args, expected", [
    (["--force"], "--force applies to --resume only"),
    (["--resume", "runs/exp", "--epochs", "3"], "--resume continues a run with its saved options"),
    ([], "needs DATA"),
])
def test_train_resume_options(args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, main(["train", *args]), expected)
    assert list(tmp_path.iterdir()) == []


def test_eval_and_demo_reuse_the_option_definitions_of_train_export_and_bench():
    def specs(cls):
        return {o.name: o.spec for o in options_of(cls)}

    train, evaluate, demo = specs(TrainConfig), specs(EvalOptions), specs(DemoOptions)
    assert evaluate["device"] is train["device"] and evaluate["batch_size"] is train["batch_size"]
    assert demo["epochs"] is train["epochs"] and demo["img_size"] is train["img_size"]
    assert demo["formats"].help == specs(ExportOptions)["formats"].help and demo["formats"].show is None
    assert demo["bench_iters"].flag == "--bench-iters" and demo["bench_iters"].min == specs(BenchOptions)["iters"].min
    assert DemoOptions().epochs == 6 and DemoOptions().formats == ("onnx", "int8")
    assert EvalOptions(run="r").batch_size == TrainConfig(data="d").batch_size == 32


def test_evaluate_api_checks_its_options_first(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ValueError, match="--batch-size 0: must be at least 1"):
        tledge.evaluate(run, batch_size=0)
    with pytest.raises(TledgeError, match="unknown eval option 'devise'; did you mean device"):
        tledge.evaluate(run, devise="cpu")
    with pytest.raises(TledgeError, match="--force applies to --resume only"):
        tledge.train(force=True)
    assert list(run.iterdir()) == []


def test_every_option_of_the_export_format_table_is_an_export_option_with_its_cli_spelling():
    from tledge.exporting.formats import FORMATS
    from tledge.exporting.options import ExportOptions, option_flag
    from tledge.options import options_of

    fields = {opt.name: opt.flag for opt in options_of(ExportOptions)}
    used = set().union(*(f.options for f in FORMATS.values()))
    assert used <= set(fields)
    assert {name: option_flag(name) for name in used} == {name: fields[name] for name in used}
    assert option_flag("nodes_to_exclude") == "--exclude-nodes" and option_flag("int8_report") == "--report"


def test_every_cli_option_comes_from_an_options_object():
    """No command declares an option by hand: every option was made by click_options from an options object."""
    import click

    from tledge.cli import cli

    def commands(group, prefix=""):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from commands(command, prefix + name + " ")
            else:
                yield prefix + name, command

    found = dict(commands(cli))
    by_hand = {name: [p.opts[0] for p in command.params if isinstance(p, click.Option)
                      and not getattr(p, "from_options_object", False) and p.name != "help"]
               for name, command in found.items()}
    assert {name: flags for name, flags in by_hand.items() if flags} == {}
    assert {"info", "predict", "eval", "train", "export", "bench", "sweep", "demo"} <= set(found)
    generated = [p for p in found["info"].params if getattr(p, "from_options_object", False)]
    assert [p.opts[0] for p in generated if isinstance(p, click.Option)] == ["--json"]
