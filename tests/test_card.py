import json

import onnx
import pytest
from onnx import TensorProto, helper

from tledge.card import ModelCard, card_from_onnx, embed_in_onnx, engine_sidecar_path
from tledge.errors import TledgeError


def make_card(**kw):
    return ModelCard(arch="mobilenet_v2", class_names=["cat", "dog", "eel"], input_size=(64, 48), **kw)


def test_json_round_trip_keeps_every_field(tmp_path):
    card = make_card(best_metrics={"val_acc": 0.5}, extra={"int8": {"flavour": "u8s8"}})
    path = card.save(tmp_path / "card.json")
    back = ModelCard.load(path)
    assert back == card
    data = json.loads(path.read_text())
    assert data["num_classes"] == 3 and data["input_size"] == [64, 48] and data["layout"] == "NCHW"
    assert data["channel_order"] == "RGB" and data["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_card_rejects_one_class_and_unknown_resize():
    with pytest.raises(TledgeError, match="at least 2 classes"):
        ModelCard(arch="x", class_names=["only"])
    with pytest.raises(TledgeError, match="resize policy"):
        make_card(resize="squash")


def test_newer_format_and_non_card_are_clear_errors():
    data = make_card().to_dict()
    data["format_version"] = 99
    with pytest.raises(TledgeError, match="newer"):
        ModelCard.from_dict(data)
    with pytest.raises(TledgeError, match="not a tledge model card"):
        ModelCard.from_dict({"hello": 1})
    with pytest.raises(TledgeError, match="not valid JSON"):
        ModelCard.from_json("{")


def test_onnx_metadata_round_trip_replaces_older_card(tmp_path):
    node = helper.make_node("Identity", ["input"], ["logits"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph)
    embed_in_onnx(model, make_card(precision="fp32"))
    embed_in_onnx(model, make_card(precision="int8"))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert [p.key for p in onnx.load(path).metadata_props] == ["tledge.card"]
    assert card_from_onnx(path).precision == "int8"


def test_engine_sidecar_path():
    assert engine_sidecar_path("a/model.fp16.engine").name == "model.fp16.engine.json"
