"""`verify` against peft where it is installed: the spec's LoRA as peft builds it, beside archcalc's build.

The base is the spec's network without its fine-tuning (archcalc's build, every layer plain); peft's model is
`get_peft_model(base, LoraConfig(r, lora_alpha, lora_dropout, target_modules))`, the targets the torch paths of the
projections archcalc adapts (a dense layer's module; an attention layer's in_proj or out_proj, GPT-2's c_attn and
c_proj). Checked: its parameters and the trainable ones against the report's totals; its state_dict (the
`base_model.model.` prefix off) loading into archcalc's build strictly, and the build's into peft's base model;
then, lora_B made random so that the adapters count, the two modules' outputs on one batch, in eval mode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..report import Report
from .build import build, concrete, dtype_of, network, parts, require, sample

PREFIX = "base_model.model."


@dataclass(frozen=True)
class PeftCheck:
    """One comparison with peft's model: archcalc's value (or its build's) and peft's."""

    what: str
    expected: object
    measured: object

    @property
    def ok(self) -> bool:
        return self.expected == self.measured


@dataclass(frozen=True)
class AgainstPeft:
    """peft's checks, or why there are none (`missing`: peft does not import)."""

    version: str | None
    checks: tuple[PeftCheck, ...] = ()
    missing: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def lora_of(report: Report):
    """The report's LoRA (rank, alpha, dropout), None where no layer has an adapter."""
    return next((row.layer.adapter for row in report.rows if row.layer.adapter is not None), None)


def against_peft(report: Report) -> AgainstPeft | None:
    """peft's model of the report's LoRA beside archcalc's build (see the module's docstring); None without LoRA."""
    report = concrete(report)
    lora = lora_of(report)
    if lora is None:
        return None
    torch = require()
    try:
        import peft
    except Exception as error:  # a broken install of what peft imports: any error, said in one line
        if isinstance(error, ImportError) and error.name == "peft":
            return AgainstPeft(None, missing="peft is not installed: LoRA not checked against peft (pip install peft)")
        why = str(error).split(". ")[0][:160] or type(error).__name__
        return AgainstPeft(None, missing=f"peft does not import ({why}): LoRA not checked against peft")
    torch.manual_seed(0)
    built = _build(report, plain=False)
    model = peft.get_peft_model(_build(report, plain=True), peft.LoraConfig(
        r=int(lora.rank), lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout), target_modules=targets(report)))
    checks = [PeftCheck("parameters", report.totals["params"], sum(p.numel() for p in model.parameters())),
              PeftCheck("trainable parameters", report.totals["trainable_params"],
                        sum(p.numel() for p in model.parameters() if p.requires_grad))]
    theirs = {k.removeprefix(PREFIX): v for k, v in model.state_dict().items()}
    checks.append(PeftCheck("peft's state_dict loads into archcalc's build (strict)", "loads", _load(built, theirs)))
    with torch.no_grad():  # peft starts lora_B at zero: random, so that the outputs compare the adapters too
        for name, p in built.named_parameters():
            if ".lora_B." in f".{name}":
                p.normal_()
    checks.append(PeftCheck("archcalc's state_dict loads into peft's model (strict)", "loads",
                            _load(model.get_base_model(), built.state_dict())))
    x = sample(report, 2, dtype_of(report.dtype))
    with torch.no_grad():
        ours, theirs_out = built.train(False)(x), model.train(False)(x)  # eval mode
    outputs = "equal" if _same(torch, ours, theirs_out) else f"differ: {_gap(torch, ours, theirs_out)}"
    checks.append(PeftCheck("outputs (eval, batch 2)", "equal", outputs))
    return AgainstPeft(peft.__version__, tuple(checks))


def targets(report: Report) -> list[str]:
    """The torch paths of the modules archcalc adapts: peft's target_modules, each one exact."""
    out = []
    for part in parts(report):
        adapter = part.row.layer.adapter
        if adapter is None:
            continue
        projections = adapter.projections
        out += [f"{part.names[0]}.{p}" for p in projections] if projections else [part.names[0]]
    return out


def _build(report: Report, plain: bool):
    """archcalc's build of the report in its dtype (peft's float32 adapters beside a 16-bit base), or with every
    layer plain: the base peft adapts."""
    if not plain:
        return build(report)
    rows = tuple(dataclasses.replace(row, layer=dataclasses.replace(row.layer, tuning=None)) for row in report.rows)
    return network(dataclasses.replace(report, rows=rows)).to(dtype_of(report.dtype))


def _load(module, state: dict) -> str:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:  # "Error(s) in loading state_dict for ...:" then the keys, one line each
        return " ".join(line.strip() for line in str(error).splitlines()[1:3])[:200] or str(error)[:200]
    return "loads"


def _same(torch, a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(torch, a[k], b[k]) for k in a)
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6))


def _gap(torch, a, b) -> str:
    if isinstance(a, dict):
        return ", ".join(f"{k}: {_gap(torch, a[k], b[k])}" for k in a)
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    return f"largest difference {float((a.float() - b.float()).abs().max()):.3g}"
