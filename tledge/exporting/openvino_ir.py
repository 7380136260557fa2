"""The `openvino` and `openvino-int8` formats: OpenVINO IR (.xml graph + .bin weights) for Intel and AMD CPUs.

Both are converted from the ONNX files this export already wrote and checked, so the IR computes what they
compute: `openvino` from model.onnx (weights kept FP32: compress_to_fp16=False, else OpenVINO would store
FP16 weights by default), `openvino-int8` from the CPU INT8 Q/DQ file model.int8.onnx (OpenVINO reads the
QuantizeLinear/DequantizeLinear pairs and runs the quantized layers on its integer kernels; no second
calibration). The card travels inside the .xml (rt_info, RT_INFO_PATH of the backend) with an `openvino`
entry saying where the IR came from; the .bin must stay beside the .xml.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tledge.card import card_from_onnx
from tledge.errors import TledgeError
from tledge.runtime.backends.openvino_backend import RT_INFO_PATH, import_openvino

FP32_FILENAME = "model.openvino.xml"
INT8_FILENAME = "model.int8.openvino.xml"


def weights_path(xml: str | Path) -> Path:
    return Path(xml).with_suffix(".bin")


def export_openvino(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Convert the tledge ONNX at `onnx_path` to an IR at `xml_path` (+ .bin), card included; returns the .xml.

    Written in a temporary folder beside it and renamed .bin first, then .xml, so a crash never leaves an .xml
    whose .bin is from another export."""
    ov = import_openvino("the openvino export formats")
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    card = card_from_onnx(onnx_path)
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - an op OpenVINO's ONNX frontend does not know
        raise TledgeError(f"OpenVINO could not convert {onnx_path.name} "
                          f"({str(exc).strip().splitlines()[0][:200]})") from None
    facts = {"version": ov.get_version(), "source": onnx_path.name, "weights": weights_path(xml_path).name}
    model.set_rt_info(card.replace(extra={**card.extra, "openvino": facts}).to_json(), RT_INFO_PATH)
    with tempfile.TemporaryDirectory(prefix=".tledge-openvino-", dir=xml_path.parent) as tmp:
        tmp_xml = Path(tmp) / xml_path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(weights_path(tmp_xml), weights_path(xml_path))
        os.replace(tmp_xml, xml_path)
    return xml_path


def build_from(source: str):
    """The openvino (from model.onnx) and openvino-int8 (from model.int8.onnx) steps."""

    def build(ctx, inputs, target: Path) -> Path:
        return export_openvino(inputs[source], target)

    return build
