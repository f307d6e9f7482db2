"""Write dlib's face recognition ResNet as ONNX, from the XML that dlib's own `net_to_xml` prints.

dlib_to_xml.cpp deserialises dlib_face_recognition_resnet_model_v1.dat and prints every layer with
9 significant digits, which round-trips float32 exactly, so the weights here are bit-identical to
dlib's. Each dlib layer maps onto plain ONNX operators with dlib's semantics:

- input_rgb_image_sized: (pixel - channel mean) / 256 on RGB, done inside the graph so the model
  takes raw 0..255 chips;
- con / affine_con / relu / max_pool / avg_pool / fc_no_bias: Conv / Mul+Add / Relu / MaxPool /
  AveragePool (GlobalAveragePool for dlib's whole-image pool) / MatMul;
- tag / skip / add_prev: dlib's residual wiring. add_prev adds tensors of different shapes by
  zero-padding the smaller one at the end of each axis (dlib's tt::add), which happens here where a
  stride-2 3x3 conv (no padding) and the 2x2 average pool of the shortcut disagree (3x3 vs 4x4) and
  where the channel count doubles.

The output is deterministic: names are derived from layer positions and nothing depends on time,
randomness or the converting machine, so the serialised bytes can be pinned by sha256.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR version 8 is what opset 17 shipped with; older onnxruntime builds (Triton containers) load it.
IR_VERSION = 8
INPUT_NAME = "chip"
OUTPUT_NAME = "embedding"
PRODUCER = "facegate triton_models/convert/dlib_resnet.py"


class ConversionError(Exception):
    """The XML holds something this converter does not know how to write faithfully."""


@dataclass(frozen=True)
class Layer:
    """One layer of dlib's net, in input-to-output order."""

    index: int  # dlib's layer index (0 = loss, counting towards the input)
    kind: str  # 'input', 'comp', 'tag', 'skip' or 'loss'
    name: str  # the XML element of the layer's details, e.g. 'con', or '' for tag/skip
    attrs: dict[str, str]
    values: npt.NDArray[np.float32]  # float32 parameters in dlib's order (empty when the layer has none)
    tag_id: int = 0  # for tag and skip layers


def parse_net_xml(xml: bytes) -> list[Layer]:
    """Parse `net_to_xml` output into layers ordered from the input to the loss."""
    root = ET.fromstring(xml)
    if root.tag != "net":
        raise ConversionError(f"expected a <net> document, got <{root.tag}>")
    layers: list[Layer] = []
    for element in root:
        if element.tag != "layer":
            raise ConversionError(f"unexpected element <{element.tag}> in <net>")
        kind = element.get("type", "")
        index = int(element.get("idx", "-1"))
        if kind in ("tag", "skip"):
            layers.append(Layer(index, kind, "", {}, np.empty(0, np.float32), int(element.get("id", "0"))))
            continue
        details = list(element)
        if len(details) != 1:
            raise ConversionError(f"layer {index}: expected one details element, got {len(details)}")
        detail = details[0]
        text = (detail.text or "").split()
        values = np.array(text, dtype=np.float32) if text else np.empty(0, np.float32)
        layers.append(Layer(index, kind, detail.tag, dict(detail.attrib), values))
    layers.reverse()
    if not layers or layers[0].kind != "input" or layers[-1].kind != "loss":
        raise ConversionError("the net must run from an input layer to a loss layer")
    return layers


@dataclass(frozen=True)
class _Value:
    """A tensor in the graph being built, with its static shape (channels, rows, columns)."""

    name: str
    shape: tuple[int, ...]


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: npt.NDArray[Any]) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _int(layer: Layer, key: str) -> int:
    try:
        return int(layer.attrs[key])
    except (KeyError, ValueError) as exc:
        raise ConversionError(f"layer {layer.index} <{layer.name}>: bad or missing {key!r}") from exc


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    # dlib and ONNX (ceil_mode=0) agree: floor division, no partial windows.
    return 1 + (size + 2 * pad - kernel) // stride


def _window(layer: Layer) -> tuple[int, int, int, int, int, int]:
    return (
        _int(layer, "nr"),
        _int(layer, "nc"),
        _int(layer, "stride_y"),
        _int(layer, "stride_x"),
        _int(layer, "padding_y"),
        _int(layer, "padding_x"),
    )


def _expect_params(layer: Layer, count: int) -> None:
    if layer.values.size != count:
        raise ConversionError(
            f"layer {layer.index} <{layer.name}>: expected {count} parameters, got {layer.values.size}"
        )


def to_onnx(layers: list[Layer]) -> onnx.ModelProto:
    """Build the ONNX model: `chip` float32 [N,3,H,W] RGB 0..255 -> `embedding` float32 [N,D]."""
    g = _GraphBuilder()
    source = layers[0]
    if source.name != "input_rgb_image_sized":
        raise ConversionError(f"unsupported input layer <{source.name}>")
    rows, cols = _int(source, "nr"), _int(source, "nc")
    means = np.array(
        [float(source.attrs["r"]), float(source.attrs["g"]), float(source.attrs["b"])], dtype=np.float32
    ).reshape(1, 3, 1, 1)
    centred = g.node("Sub", [INPUT_NAME, g.const("input_mean_rgb", means)], "input_centred")
    # dlib divides by 256.0; multiplying by 2**-8 is the same float operation, exactly.
    scale = g.const("input_scale", np.array(1.0 / 256.0, dtype=np.float32))
    current = _Value(g.node("Mul", [centred, scale], "input_scaled"), (3, rows, cols))
    tags: dict[int, _Value] = {}
    flat = False

    for layer in layers[1:]:
        prefix = f"l{layer.index:03d}_{layer.name or layer.kind}"
        if layer.kind == "tag":
            tags[layer.tag_id] = current
            continue
        if layer.kind == "skip":
            if layer.tag_id not in tags:
                raise ConversionError(f"layer {layer.index}: skip to tag{layer.tag_id} that is not below it")
            current = tags[layer.tag_id]
            continue
        if layer.kind == "loss":
            if layer.name != "loss_metric":
                raise ConversionError(f"unsupported loss layer <{layer.name}>")
            break
        if flat and layer.name != "fc_no_bias":
            raise ConversionError(f"layer {layer.index} <{layer.name}> after the fully connected layer")
        current, flat = _comp(g, layer, prefix, current, tags)

    if not flat:
        raise ConversionError("the net does not end in a fully connected layer")
    g.nodes.append(helper.make_node("Identity", [current.name], [OUTPUT_NAME], name=OUTPUT_NAME))
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, rows, cols])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", current.shape[0]])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=(
            "dlib_face_recognition_resnet_model_v1 (Davis King, CC0) converted from dlib's net_to_xml. "
            "Input: aligned 150x150 RGB face chips, raw 0..255. Output: 128-d descriptor; "
            "same person when the L2 distance is below 0.6."
        ),
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _comp(
    g: _GraphBuilder, layer: Layer, prefix: str, current: _Value, tags: dict[int, _Value]
) -> tuple[_Value, bool]:
    """Write one computational layer; return the new current value and whether it is flat."""
    if layer.name == "con":
        return _con(g, layer, prefix, current), False
    if layer.name == "affine_con":
        channels = current.shape[0]
        if layer.attrs.get("disabled") == "true":
            return current, False
        _expect_params(layer, 2 * channels)
        gamma = layer.values[:channels].reshape(1, channels, 1, 1)
        beta = layer.values[channels:].reshape(1, channels, 1, 1)
        scaled = g.node("Mul", [current.name, g.const(f"{prefix}_gamma", gamma)], f"{prefix}_mul")
        return _Value(g.node("Add", [scaled, g.const(f"{prefix}_beta", beta)], prefix), current.shape), False
    if layer.name == "relu":
        return _Value(g.node("Relu", [current.name], prefix), current.shape), False
    if layer.name in ("max_pool", "avg_pool"):
        return _pool(g, layer, prefix, current), False
    if layer.name == "add_prev":
        tag_id = _int(layer, "tag")
        if tag_id not in tags:
            raise ConversionError(f"layer {layer.index}: add_prev of tag{tag_id} that is not below it")
        return _add_prev(g, prefix, current, tags[tag_id]), False
    if layer.name == "fc_no_bias":
        outputs = _int(layer, "num_outputs")
        inputs = int(np.prod(current.shape))
        _expect_params(layer, inputs * outputs)
        # dlib computes output = input * W with W stored as (inputs x outputs), row-major.
        weights = g.const(f"{prefix}_weight", layer.values.reshape(inputs, outputs))
        flat = g.node("Flatten", [current.name], f"{prefix}_flatten", axis=1)
        return _Value(g.node("MatMul", [flat, weights], prefix), (outputs,)), True
    raise ConversionError(f"layer {layer.index}: unsupported layer <{layer.name}>")


def _con(g: _GraphBuilder, layer: Layer, prefix: str, current: _Value) -> _Value:
    filters = _int(layer, "num_filters")
    kh, kw, sy, sx, py, px = _window(layer)
    channels, rows, cols = current.shape
    use_bias = layer.attrs.get("use_bias", "true") == "true"
    weight_count = filters * channels * kh * kw
    _expect_params(layer, weight_count + (filters if use_bias else 0))
    inputs = [
        current.name,
        g.const(f"{prefix}_weight", layer.values[:weight_count].reshape(filters, channels, kh, kw)),
    ]
    if use_bias:
        inputs.append(g.const(f"{prefix}_bias", layer.values[weight_count:]))
    name = prefix + ("_conv" if layer.attrs.get("use_relu") == "true" else "")
    out = g.node("Conv", inputs, name, kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
    if layer.attrs.get("use_relu") == "true":
        out = g.node("Relu", [out], prefix)
    return _Value(out, (filters, _conv_out(rows, kh, sy, py), _conv_out(cols, kw, sx, px)))


def _pool(g: _GraphBuilder, layer: Layer, prefix: str, current: _Value) -> _Value:
    kh, kw, sy, sx, py, px = _window(layer)
    channels, rows, cols = current.shape
    if layer.name == "avg_pool" and kh == 0 and kw == 0:
        # dlib's avg_pool_everything: the window is the whole image.
        return _Value(g.node("GlobalAveragePool", [current.name], prefix), (channels, 1, 1))
    if layer.name == "avg_pool" and (py or px):
        # dlib averages over the window inside the image only; unverified here, so refuse.
        raise ConversionError(f"layer {layer.index}: padded avg_pool is not supported")
    op = "MaxPool" if layer.name == "max_pool" else "AveragePool"
    out = g.node(op, [current.name], prefix, kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
    return _Value(out, (channels, _conv_out(rows, kh, sy, py), _conv_out(cols, kw, sx, px)))


def _pad_to(g: _GraphBuilder, value: _Value, shape: tuple[int, ...], name: str) -> str:
    if value.shape == shape:
        return value.name
    # ONNX pads: all begins (N, C, H, W), then all ends; dlib pads only at the ends.
    ends = [0] + [target - have for have, target in zip(value.shape, shape, strict=True)]
    pads = np.array([0, 0, 0, 0, *ends], dtype=np.int64)
    return g.node("Pad", [value.name, g.const(f"{name}_pads", pads)], name, mode="constant")


def _add_prev(g: _GraphBuilder, prefix: str, current: _Value, other: _Value) -> _Value:
    shape = tuple(max(a, b) for a, b in zip(current.shape, other.shape, strict=True))
    left = _pad_to(g, current, shape, f"{prefix}_pad_main")
    right = _pad_to(g, other, shape, f"{prefix}_pad_shortcut")
    return _Value(g.node("Add", [left, right], prefix), shape)
