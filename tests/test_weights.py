"""ImageNet weights: offline error, `tledge weights add`, and the real MobileNetV2 file when it is here."""

import shutil
import urllib.error
from pathlib import Path

import pytest
import torch

from tledge.cli import main
from tledge.errors import TledgeError
from tledge.models.backbones import create_model

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "mobilenet_v2-b0353104.pth"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_offline_imagenet_names_the_file_and_the_fix(torch_home, monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(TledgeError) as info:
        create_model("resnet18", 3, weights="imagenet")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "tledge weights add" in message
    assert str(torch_home / "hub" / "checkpoints") in message


def test_weights_add_refuses_unknown_files(tmp_path, torch_home, capsys):
    fake = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save({"w": torch.zeros(2)}, fake)  # right name, wrong content
    assert main(["weights", "add", str(fake)]) == 2
    assert "matches no torchvision ImageNet weights" in capsys.readouterr().err
    assert main(["weights", "add", str(tmp_path / "missing.pth")]) == 2


@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason="shared MobileNetV2 weights not on this machine")
def test_weights_add_installs_real_file_and_imagenet_loads_offline(tmp_path, torch_home, capsys):
    renamed = tmp_path / "downloaded.bin"  # recognised by content, not by name
    shutil.copyfile(SHARED_WEIGHTS, renamed)
    assert main(["weights", "add", str(renamed)]) == 0
    assert "mobilenet_v2 IMAGENET1K_V1" in capsys.readouterr().out
    installed = torch_home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert installed.is_file()
    model = create_model("mobilenet_v2", 6, weights="imagenet")
    reference = torch.load(SHARED_WEIGHTS, weights_only=True)
    torch.testing.assert_close(model.features[0][0].weight, reference["features.0.0.weight"])
    assert model.head[-1].out_features == 6
