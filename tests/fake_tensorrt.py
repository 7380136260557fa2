"""A call-recording stand-in for the `tensorrt` builder API, for testing tledge.exporting.tensorrt_build's logic
(era detection, flags per era, profile shapes, workspace, timing-cache reuse, sidecar, error paths) on
machines without a GPU.

This is NOT TensorRT and proves nothing about TensorRT itself: it checks that tledge calls the API it means
to call, in a sensible order with sensible values, and records every attribute name tledge touches so a
test can compare them with the names found in real TensorRT bindings. The "engine" it builds is JSON
describing the build.

It refuses what real TensorRT refuses, so that tledge's mistakes fail here first: a Q/DQ graph its ONNX
parser rejects (INT32 or UINT8 DequantizeLinear inputs, UINT8 QuantizeLinear, non-zero zero points, float16
scales below opset 19), network-creation bits and builder flags that the version does not define (11.x
has no precision flags and no EXPLICIT_BATCH), and a dynamic-shape network without an optimization profile.
Its enum members per version are checked against ../shared/tensorrt-api (tests/test_export_tensorrt.py).

    trt = fake_tensorrt.make("10.3.0")      # a module object; install with monkeypatch.setitem(sys.modules, ...)
    trt.CALLS  -> [("set_flag", "FP16"), ...]   trt.NAMES -> {"create_network", "BuilderFlag", ...}
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path


def make(version: str = "10.3.0", parse_errors=(), fail_build: bool = False):
    """A fresh fake `tensorrt` module for TensorRT `version` (8.6.x, 10.x or 11.x surface)."""
    major, minor = (int(p) for p in version.split(".")[:2])
    state = {"calls": [], "names": set()}

    def record(*call):
        state["calls"].append(call)

    class Recorded:
        """Records every public attribute name read on it from outside this module (methods included)."""

        def __getattribute__(self, name):
            if not name.startswith("_") and sys._getframe(1).f_globals.get("__name__") != __name__:
                state["names"].add(name)
            return object.__getattribute__(self, name)

    class Enum(Recorded):
        def __init__(self, **members):
            for key, value in members.items():
                object.__setattr__(self, key, value)

    class Flag(int):
        def __new__(cls, value, label):
            obj = int.__new__(cls, value)
            obj.label = label
            return obj

    class Severity(Recorded):
        pass

    class Logger(Recorded):
        WARNING = "WARNING"
        INFO = "INFO"

        def __init__(self, severity="WARNING"):
            record("Logger", severity)

    class Tensor(Recorded):
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network(Recorded):
        def __init__(self, flags):
            self.flags = flags
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, index):
            return self.inputs[index]

    class ParserError(Recorded):
        def __init__(self, text):
            self.text = text

        def __str__(self):
            return self.text

    class OnnxParser(Recorded):
        def __init__(self, network, logger):
            self.network = network
            self.errors = []

        def parse_from_file(self, path):
            record("parse_from_file", Path(path).name)
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            errors = list(parse_errors) or _parser_refusals(model)
            if errors:
                self.errors = [ParserError(e) for e in errors]
                return False
            graph_input = model.graph.input[0]
            dims = [d.dim_value if d.dim_value > 0 else -1 for d in graph_input.type.tensor_type.shape.dim]
            self.network.inputs.append(Tensor(graph_input.name, tuple(dims)))
            self.network.elem_type = graph_input.type.tensor_type.elem_type
            self.network.fp16_weights = any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
            self.network.qdq = any(n.op_type == "DequantizeLinear" for n in model.graph.node)
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, index):
            return self.errors[index]

    class TimingCache(Recorded):
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return memoryview(self.data + b"+")  # grows each build, so reuse is visible

    class OptimizationProfile(Recorded):
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, minimum, opt, maximum):
            record("set_shape", name, tuple(minimum), tuple(opt), tuple(maximum))
            self.shapes[name] = (tuple(minimum), tuple(opt), tuple(maximum))

    class BuilderConfig(Recorded):
        def __init__(self):
            self.flags, self.profiles, self.pool_limits = [], [], {}
            self.cache = None
            self.progress_monitor = None

        def set_flag(self, flag):
            record("set_flag", flag.label)
            self.flags.append(flag.label)

        def set_memory_pool_limit(self, pool, size):
            record("set_memory_pool_limit", pool.label, size)
            self.pool_limits[pool.label] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            record("create_timing_cache", bytes(data))
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            record("set_timing_cache", cache.data, ignore_mismatch)
            if cache.data.startswith(b"mismatch"):
                return False
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder(Recorded):
        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            record("create_network", flags)
            known = 0
            for value in creation.values():
                known |= 1 << int(value)
            if flags & ~known:  # a bit this version does not define (e.g. EXPLICIT_BATCH's on 11.x)
                raise ValueError(f"create_network: unknown NetworkDefinitionCreationFlag bits {flags & ~known:#x}")
            return Network(flags)

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return OptimizationProfile()

        def build_serialized_network(self, network, config):
            dynamic = any(-1 in tuple(t.shape) for t in network.inputs)
            if dynamic and not config.profiles:  # TensorRT: "Network has dynamic or shape inputs, but no
                record("error", "no optimization profile")  # optimization profile has been defined."
                return None
            monitor = config.progress_monitor
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                monitor.step_complete("Building engine", 0)
                monitor.phase_finish("Building engine")
            record("build_serialized_network")
            if fail_build:
                return None
            spec = {"flags": config.flags, "network_flags": network.flags, "fp16_graph": network.fp16_weights,
                    "qdq": network.qdq,
                    "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles]}
            return memoryview(json.dumps(spec).encode())

    module = types.ModuleType("tensorrt")
    # A spec like an installed module's: importlib.util.find_spec("tensorrt") raises ValueError for a module in
    # sys.modules without one, and torch._dynamo calls it on first import (a test run alone then fails).
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    module.__version__ = version
    module.CALLS = state["calls"]
    module.NAMES = state["names"]
    module.Logger = Logger
    module.Builder = Builder
    module.OnnxParser = OnnxParser
    module.MemoryPoolType = Enum(WORKSPACE=Flag(0, "WORKSPACE"))
    # Enum members per version. 8.x/10.x: EXPLICIT_BATCH = 0, STRONGLY_TYPED = 1 (10.0+). 11.x removed
    # EXPLICIT_BATCH and strong typing is the only mode; its STRONGLY_TYPED is taken here to be 0 (the issue's
    # reading of the 11.x headers: not checkable on this machine, so tests derive expected bits from the enum).
    if major >= 11:
        creation = {"STRONGLY_TYPED": Flag(0, "STRONGLY_TYPED")}
    else:
        creation = {"EXPLICIT_BATCH": Flag(0, "EXPLICIT_BATCH")}
        if major >= 10:
            creation["STRONGLY_TYPED"] = Flag(1, "STRONGLY_TYPED")
    module.NetworkDefinitionCreationFlag = Enum(**creation)
    # TensorRT 11 removed every precision flag (FP16, INT8, BF16, FP8, ...): none here.
    builder_flags = {} if major >= 11 else {"FP16": Flag(0, "FP16"), "INT8": Flag(1, "INT8")}
    module.BuilderFlag = Enum(**builder_flags)
    if major >= 10:
        class IProgressMonitor(Recorded):
            def __init__(self):
                pass

        module.IProgressMonitor = IProgressMonitor

    class RecordingModule(types.ModuleType):
        def __getattribute__(self, name):
            if (not name.startswith("_") and name not in ("CALLS", "NAMES")
                    and sys._getframe(1).f_globals.get("__name__") != __name__):
                state["names"].add(name)
            return types.ModuleType.__getattribute__(self, name)

    module.__class__ = RecordingModule
    return module


def _parser_refusals(model) -> list[str]:
    """What TensorRT's ONNX parser refuses in a Q/DQ graph, written independently of tledge's checker:
    DequantizeLinear of anything but INT8 (INT32 biases, UINT8), QuantizeLinear to UINT8, non-zero zero
    points, float16 scales below opset 19 (not valid ONNX there), and any scale that is not positive
    (onnx-tensorrt's builtin_op_importers.cpp, QuantDequantLinearHelper: "Scale coefficients must all be
    positive", for float, float16 and bfloat16 scales alike)."""
    from onnx import TensorProto, numpy_helper

    constants = {i.name: i for i in model.graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.input)}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    errors = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        where = f"In node {index} with name: {node.name} and operator: {node.op_type} (parseGraph)"
        if node.op_type == "DequantizeLinear":
            data = constants[node.input[0]].data_type if node.input[0] in constants else types.get(node.input[0])
            if data in (TensorProto.INT32, TensorProto.UINT8):
                errors.append(f"{where}: INVALID_NODE: DequantizeLinear input must be INT8, got "
                              f"{TensorProto.DataType.Name(data)}")
        zero = constants.get(node.input[2]) if len(node.input) > 2 else None
        if node.op_type == "QuantizeLinear" and (zero is None or zero.data_type == TensorProto.UINT8):
            errors.append(f"{where}: UNSUPPORTED_NODE: QuantizeLinear to UINT8 is not supported")
        if zero is not None and numpy_helper.to_array(zero).any():
            errors.append(f"{where}: INVALID_NODE: zero point must be zero")
        scale = constants.get(node.input[1])
        if scale is not None and scale.data_type == TensorProto.FLOAT16 and opset < 19:
            errors.append(f"{where}: INVALID_NODE: float16 scale needs opset 19")
        if scale is not None and not (numpy_helper.to_array(scale).astype("float64") > 0).all():
            errors.append(f"{where}: INVALID_NODE: Scale coefficients must all be positive")
    return errors


def engine_spec(path) -> dict:
    """What the fake builder put into an engine file."""
    return json.loads(Path(path).read_bytes())
