"""A spec as an ONNX file (`archcalc export SPEC --onnx -o net.onnx`), its dynamic axes named after the spec's symbols.

The batch axis is always dynamic and named B; an input axis that the spec writes as a
bare name (`input = [3, "H", "W"]`) is dynamic under that name. Tracing needs numbers:
the sizes given with --set, else each name's EXAMPLE size. The file is checked by
onnx's checker and, where onnxruntime is installed, run against the torch module.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from ..analysis.engine import BATCH
from ..core import num
from ..core.errors import ArchcalcError
from ..report import analyze
from ..spec.read import Spec
from .build import build, require

EXAMPLE = 224  # the size a free name of the input gets for tracing when --set gives none
INSTALL = "pip install onnx onnxruntime (from archcalc's checkout: pip install '.[onnx]')"


@dataclass(frozen=True)
class Exported:
    """An exported network: the ONNX bytes, its dynamic axes, and how far it was checked."""

    data: bytes
    dynamic: dict[int, str]  # input axis (0 = batch) -> its name
    traced: tuple[int, ...]  # the input shape it was traced with, batch included
    checked_with: str  # "onnxruntime" (outputs compared with torch), or "onnx checker" alone


def export(spec: Spec, **values) -> Exported:
    """The spec's network as ONNX, traced at `values` (free names of the input at EXAMPLE)."""
    torch = require()
    try:
        import onnx
    except ImportError:
        raise ArchcalcError(f"ONNX export needs the onnx package, which is not installed\n  hint: {INSTALL}") from None
    symbolic = analyze(spec, **values)
    # an input axis is dynamic where the weights do not depend on it (a dense layer after flatten fixes H and W)
    fixed = num.free_names(symbolic.totals["params"])
    dynamic = {0: BATCH} | {axis + 1: str(d) for axis, d in enumerate(symbolic.input)
                            if getattr(d, "is_Symbol", False) and str(d) not in fixed}
    named = {str(d) for d in symbolic.input if getattr(d, "is_Symbol", False)}
    trace_values = {name: EXAMPLE for name in named if name not in values} | values
    report = analyze(spec, **trace_values)
    model = build(report).train(False)  # inference mode
    x = torch.randn(2, *(int(d) for d in report.input), dtype=next(model.parameters()).dtype)
    file = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice: it is the one that needs no onnxscript
        torch.onnx.export(model, (x,), file, dynamo=False, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": dynamic, "output": {0: BATCH}})
    data = file.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    checked = _run(data, model, x)
    return Exported(data, dynamic, tuple(x.shape), checked)


def _run(data: bytes, model, x) -> str:
    """Run the ONNX file where onnxruntime is installed, at the traced batch and another, against torch."""
    try:
        import onnxruntime
    except ImportError:
        return "onnx checker"
    torch = require()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch in (x, torch.cat([x, x[:1]])):  # the traced batch, and another: B is dynamic
        with torch.no_grad():
            expected = model(batch).float().numpy()
        got = session.run(None, {"input": batch.numpy()})[0]
        if got.shape != expected.shape or not torch.allclose(torch.from_numpy(got), torch.from_numpy(expected),
                                                             rtol=1e-4, atol=1e-5):
            raise ArchcalcError("the ONNX file does not compute what the torch module computes (onnxruntime)")
    return "onnxruntime"
