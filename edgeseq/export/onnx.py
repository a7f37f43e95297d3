"""ONNX exporter: each step module through `torch.onnx.export` (the dynamo exporter, opset 18).

Dynamic axes are declared as Dim.DYNAMIC so the exporter infers how they relate (attention_mask's
length = past + new tokens) instead of us spelling the relation out.
"""
from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..manifest import ComponentInfo
from .steps import Component

OPSET = 18
_PROTOBUF_LIMIT = 1_800_000_000  # graphs above ~2 GB must keep weights in an external file


def export_component(c: Component, out_dir: Path, weights: str = "fp32") -> ComponentInfo:
    import onnx
    import torch
    from torch.export import Dim

    path = out_dir / f"{c.name}.onnx"
    shapes = [{axis: Dim.DYNAMIC for axis in c.dynamic.get(n, {})} for n in c.inputs]
    # forward(a, b, *rest): the exporter wants the var-positional part as one nested tuple
    fixed = sum(1 for p in inspect.signature(c.module.forward).parameters.values()
                if p.kind == p.POSITIONAL_OR_KEYWORD)
    dynamic_shapes: tuple[Any, ...] = tuple(shapes[:fixed]) + ((tuple(shapes[fixed:]),) if len(shapes) > fixed else ())
    weight_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in c.module.parameters()}.values())
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(c.module, c.example, str(path), input_names=c.inputs, output_names=c.outputs,
                              dynamic_shapes=dynamic_shapes, opset_version=OPSET, dynamo=True,
                              external_data=weight_bytes > _PROTOBUF_LIMIT, verbose=False, report=False)
    except Exception as e:  # the exporter raises many types; all mean this graph did not convert
        raise ExportError(f"torch.onnx.export failed for component '{c.name}': {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}",
                          "re-run with --debug for the exporter's trace; report it with the model's config") from e
    model = onnx.load(str(path), load_external_data=False)
    return ComponentInfo(file=path.name, inputs=_io(model.graph.input, c.dynamic), outputs=_io(model.graph.output, c.dynamic),
                         cache_inputs=c.cache_inputs, cache_outputs=c.cache_outputs,
                         weight_bytes=_initializer_bytes(model))


def _io(values: Any, dynamic: dict[str, dict[int, str]]) -> list[dict[str, Any]]:
    import onnx

    out = []
    for v in values:
        t = v.type.tensor_type
        names = dynamic.get(v.name, {})
        shape = [names.get(i, d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
                 for i, d in enumerate(t.shape.dim)]
        out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape})
    return out


def _initializer_bytes(model: Any) -> int:
    import numpy as np
    import onnx

    total = 0
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        total += n * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(init.data_type)).itemsize
    return total
