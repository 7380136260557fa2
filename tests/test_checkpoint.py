import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tledge.card import ModelCard
from tledge.checkpoint import load_checkpoint, save_checkpoint
from tledge.models.restore import load_model
from tledge.errors import TledgeError
from tledge.models.backbones import create_model


def tiny_checkpoint(tmp_path):
    card = ModelCard(arch="mobilenet_v2", class_names=["a", "b", "c"], input_size=(32, 32),
                     arch_kwargs={"width_mult": 0.25})
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", 3, width_mult=0.25).eval()
    path = save_checkpoint(tmp_path / "best.pt", {"card": card.to_dict(), "model": model.state_dict(), "epoch": 3,
                                                  "rng": {"torch": torch.get_rng_state()}})
    return path, model, card


def test_round_trip_loads_with_weights_only_and_same_outputs(tmp_path):
    path, model, card = tiny_checkpoint(tmp_path)
    raw = torch.load(path, weights_only=True)  # the contract: tensors and primitives only
    assert raw["epoch"] == 3 and raw["card"]["class_names"] == ["a", "b", "c"]
    loaded, loaded_card = load_model(tmp_path)  # a run folder resolves to best.pt
    assert loaded_card == card
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_corrupt_and_missing_checkpoints_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(TledgeError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(TledgeError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(TledgeError, match="no best.pt"):
        load_model(tmp_path)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(TledgeError, match="not a tledge checkpoint"):
        load_model(tmp_path / "plain.pt")


def test_kill_during_save_leaves_previous_file(tmp_path):
    """A process killed in the middle of torch.save must not damage the last good checkpoint."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
    script = textwrap.dedent(f"""
        import os, torch
        from tledge import atomic
        def writer(tmp):
            with open(tmp, "wb") as f:
                f.write(b"half a checkpoint")
                f.flush()
            os._exit(9)  # killed mid-write, before the rename
        atomic.atomic_write_with({str(path)!r}, writer)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 9
    assert load_checkpoint(path)["epoch"] == 1
    leftovers = [p for p in os.listdir(tmp_path) if p != "last.pt"]
    assert all(p.endswith(".tmp") for p in leftovers)  # only an orphan temp file, never a broken last.pt
