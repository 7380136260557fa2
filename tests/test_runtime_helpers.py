"""Shared builders for the runtime tests: a tiny trained-looking run (best.pt + export/model.onnx) and images.

Imported by test_runtime.py, test_predict.py and test_bench.py (the `artifacts` fixture is session-scoped).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tledge.card import ModelCard, engine_sidecar_path

CLASSES = ["cat", "dog", "fish"]
SIZE = 32
IMAGES_PER_CLASS = 4


def make_card(**changes) -> ModelCard:
    card = ModelCard("mobilenet_v2", CLASSES, input_size=(SIZE, SIZE), arch_kwargs={"width_mult": 0.25})
    return card.replace(**changes) if changes else card


def write_images(root: Path) -> list[Path]:
    """Class subfolders of varied small PNG/JPEG images (sizes differ from the model's input)."""
    rng = np.random.default_rng(0)
    paths = []
    for c, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(IMAGES_PER_CLASS):
            h, w = 40 + 7 * i, 48 + 5 * c
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            image[:, :, c] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
            path = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
            cv2.imwrite(str(path), image)
            paths.append(path)
    return sorted(paths)


def build_run(root: Path) -> dict:
    import torch

    from tledge.card import embed_in_onnx
    from tledge.checkpoint import save_checkpoint
    from tledge.models.backbones import create_model

    torch.manual_seed(0)
    model = create_model("mobilenet_v2", len(CLASSES), width_mult=0.25).eval()
    with torch.no_grad():  # spread the random head so top-1 is never a near-tie between backends
        for p in model.head.parameters():
            p.mul_(50.0)
    card = make_card()
    run = root / "run"
    (run / "export").mkdir(parents=True)
    save_checkpoint(run / "best.pt", {"card": card.to_dict(), "model": model.state_dict(), "epoch": 1})
    onnx_path = run / "export" / "model.onnx"
    _export_onnx(model, card, onnx_path)
    images = root / "images"
    paths = write_images(images)
    return {"root": root, "run": run, "pt": run / "best.pt", "onnx": onnx_path, "images": images, "paths": paths,
            "model": model, "card": card}


def _export_onnx(model, card, path: Path) -> None:
    import onnx
    import torch

    from tledge.card import embed_in_onnx

    dummy = torch.zeros(1, 3, *card.input_size)
    torch.onnx.export(model, dummy, str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    proto = onnx.load(str(path))
    embed_in_onnx(proto, card)
    onnx.save(proto, str(path))


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("runtime"))


def write_engine_with_sidecar(folder: Path, card: ModelCard, engine: bytes = b"not an engine", **trt_facts) -> Path:
    path = folder / "model.fp16.engine"
    path.write_bytes(engine)
    facts = {"version": "10.3.0", "gpu_name": "Fake Orin", "compute_capability": "8.7", "precision": "fp16",
             "profile": {"min": [1, 3, SIZE, SIZE], "opt": [1, 3, SIZE, SIZE], "max": [8, 3, SIZE, SIZE]}}
    facts.update(trt_facts)
    sidecar = card.replace(precision="fp16", extra={"tensorrt": facts})
    engine_sidecar_path(path).write_text(json.dumps(sidecar.to_dict()))
    return path


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from tledge.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err
