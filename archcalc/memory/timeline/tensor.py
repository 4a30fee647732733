"""Tensor parallelism in Megatron's style: one rank's network, whose step the timeline runs as any other.

The plan (`Plan.of`): an attention layer splits its heads (its fused q, k, v projection column-parallel, its output
projection row-parallel); a dense layer whose output reaches exactly one other dense layer through element-wise
rows only (an MLP: c_fc, GELU, c_proj) is column-parallel and that one row-parallel, the rows between running on the
columns; everything else is replicated (embeddings, norms, a tied output layer: each rank holds it whole).

What a rank allocates, measured with torch.distributed.tensor.parallel's ColwiseParallel and RowwiseParallel on the
CPU (gloo, torch 2.13; tests/oracle/tensor_parallel.py tracks each rank's live storages):
- a column-parallel layer reads its whole input and writes its columns; in backward its input's gradient is a
  partial sum, which the input's `from_local` all-reduces into a new tensor (a functional collective clones),
  the partial freed after;
- a row-parallel layer reads its columns; DTensor turns its replicated bias into a partial one (bias/tp, a new
  tensor made before the product and freed after it), the product is a partial sum of the whole output, all-reduced
  into a new tensor, the partial freed after; its backward is local (the gradient it reads is replicated);
- each rank keeps its own parameters' shards, their gradients and their optimizer state; the replicated ones whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...core import fmt, num
from ...core.errors import SpecError
from ...core.num import Dim, Shape, Value
from ...core.parallel import Layout
from ...layers.attention import Attention
from ...layers.dense import Dense
from ...layers.events import Drop, KeepInput, New, Program
from .parameters import Trained, reaching
from .step import Step

if TYPE_CHECKING:
    from ...analysis.network import Network, Row
    from .peaks import Timeline

def _split(whole: Dim, tp: int, what: str, where: str) -> Dim:
    """`whole` / tp, refused where tp does not divide it."""
    if num.is_concrete(whole) and whole % tp:
        raise SpecError(f"{what} = {fmt.group(whole)} does not divide among --tp {tp} ranks",
                        f"tensor parallelism splits {what} evenly: a --tp that divides it", where=where)
    return num.div(whole, tp)


@dataclass(frozen=True, kw_only=True)
class ShardedAttention(Attention):
    """One rank's attention: num_heads/tp heads (kv_heads/tp), in_proj's columns, out_proj's rows and its whole bias."""

    shards: int = 1

    def local(self) -> Attention:
        """The heads this rank computes, as an attention layer of its own over [T, d/tp]."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(Attention)}
        kv = self.num_heads if self.kv_heads is None else self.kv_heads
        return Attention(**fields | {"num_heads": num.div(self.num_heads, self.shards),
                                     "kv_heads": None if self.kv_heads is None else num.div(kv, self.shards)})

    def narrow(self, x: Shape) -> Shape:
        t, d = self.tokens(x)
        return (t, num.div(d, self.shards))

    def param_tensors(self, x: Shape) -> tuple[Dim, ...]:
        _, d = self.tokens(x)
        inner = num.normal(d + 2 * self.kv_dim(x))
        w_in, w_out = num.normal(num.div(d * inner, self.shards)), num.normal(num.div(d * d, self.shards))
        return (w_in, num.div(inner, self.shards), w_out, d) if self.bias else (w_in, w_out)

    def weights(self, x: Shape) -> Dim:
        tensors = self.param_tensors(x)
        return num.normal(tensors[0] + tensors[2 if self.bias else 1])

    def biases(self, x: Shape) -> Dim:
        tensors = self.param_tensors(x)
        return num.normal(tensors[1] + tensors[3]) if self.bias else 0

    def keeps(self, x, y, grad):
        whole = super().keeps(x, y, grad)[0]  # its input, whole
        return (whole, *self.local().keeps(self.narrow(x), self.narrow(y), grad)[1:])

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True, amp=None) -> Program | None:
        """The local heads' program, with out_proj row-parallel (its partial output all-reduced) and in_proj
        column-parallel (the input's partial gradient all-reduced after the module's backward)."""
        if amp is not None:
            return None
        local = self.local().program(self.narrow(x), grad, device, inplace)
        t, d = self.tokens(x)
        td, inner = num.normal(t * d), num.normal(d + 2 * self.kv_dim(x))
        fwd: list = []
        for event in local.forward:
            if isinstance(event, New) and event.name == "out":
                fwd += row_parallel_output(td, d if self.bias else 0)
            else:
                fwd.append(event)
        sizes = {"grad.out_proj.weight": num.div(d * d, self.shards), "grad.out_proj.bias": d,
                 "grad.in_proj.weight": num.div(d * inner, self.shards)}
        bwd: list = []
        for event in local.backward:
            if isinstance(event, New) and event.name in sizes:
                bwd.append(dataclasses.replace(event, elements=num.normal(sizes[event.name])))
            elif isinstance(event, New) and event.name == "gx":
                bwd.append(New("gx.partial", td))
            else:
                bwd.append(event)
        if grad:
            bwd += all_reduced("gx", td)
        return Program(tuple(fwd), tuple(bwd))


def row_parallel_output(elements: Dim, bias: Dim) -> list:
    """A row-parallel product's output: DTensor's partial bias (bias/tp), the partial sum, the bias gone, the sum
    all-reduced into a new tensor ("out"), the partial gone."""
    events: list = [New("bias.partial", bias, per_sample=False)] if bias != 0 else []
    events.append(New("out.partial", elements))
    events += [Drop("bias.partial")] if bias != 0 else []
    return events + all_reduced("out", elements, "out.partial")


def all_reduced(name: str, elements: Dim, partial: str | None = None) -> list:
    """A functional all-reduce: a new tensor `name` (the partial sum cloned, reduced in place), the partial dropped."""
    return [New(name, elements), Drop(partial or f"{name}.partial")]


@dataclass(frozen=True, kw_only=True)
class ColumnDense(Dense):
    """A column-parallel dense layer (ColwiseParallel): its whole input in, out_features/tp columns out."""

    shards: int = 1

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True, amp=None) -> Program | None:
        if amp is not None:
            return None
        tokens, n_in, n_out = self.tokens(x), self.features(x), self.out_features
        bwd: list = [New("gx.partial", num.normal(tokens * n_in))] if grad else []
        bwd += [New("grad.weight", num.normal(n_in * n_out), per_sample=False)]
        bwd += [New("grad.bias", n_out, per_sample=False)] if self.bias else []
        bwd.append(Drop("g", "x"))
        bwd += all_reduced("gx", num.normal(tokens * n_in)) if grad else []
        return Program((KeepInput(), New("out", num.normal(tokens * n_out))), tuple(bwd))


@dataclass(frozen=True, kw_only=True)
class RowDense(Dense):
    """A row-parallel dense layer (RowwiseParallel): its input's columns in, the whole output out (all-reduced), its
    bias replicated."""

    shards: int = 1

    def program(self, x: Shape, grad: bool, device: str, inplace: bool = True, amp=None) -> Program | None:
        if amp is not None:
            return None
        tokens, n_in, n_out = self.tokens(x), self.features(x), self.out_features
        out = num.normal(tokens * n_out)
        fwd = [KeepInput(), *row_parallel_output(out, n_out if self.bias else 0)]
        bwd: list = [New("gx", num.normal(tokens * n_in))] if grad else []
        bwd += [New("grad.weight", num.normal(n_in * n_out), per_sample=False)]
        bwd += [New("grad.bias", n_out, per_sample=False)] if self.bias else []
        bwd.append(Drop("g", "x"))
        return Program(tuple(fwd), tuple(bwd))


@dataclass(frozen=True)
class Plan:
    """Which rows a tensor-parallel rank splits: attention by heads, dense pairs by columns then rows, the element-wise
    rows between them on the columns (`local`)."""

    heads: frozenset[str]
    columns: frozenset[str]
    rows: frozenset[str]
    local: frozenset[str]

    @classmethod
    def of(cls, net: Network) -> Plan:
        readers: dict[str, list[Row]] = {}
        for row in net.rows:
            for name in row.inputs:
                readers.setdefault(name, []).append(row)
        outputs = {row.name for row in net.output_rows}
        heads = {row.name for row in net.rows if row.layer.tensor_parallel == "heads"}
        columns, rows, local = set(), set(), set()
        for row in net.rows:
            if not _splittable(row):
                continue
            chain, name = [], row.name
            while name not in outputs and len(readers.get(name, ())) == 1:
                after = readers[name][0]
                if after.layer.tensor_parallel == "columnwise" and not after.layer.merges and tuple(after.output) == tuple(after.input):
                    chain.append(after.name)
                    name = after.name
                    continue
                if _splittable(after) and after.name not in columns:
                    columns.add(row.name)
                    rows.add(after.name)
                    local.update(chain)
                break
        return cls(frozenset(heads), frozenset(columns), frozenset(rows), frozenset(local))

    def paths(self) -> dict[str, str]:
        """The layers torch's plan names (archcalc/backends/distributed.py maps them onto modules): "colwise",
        "rowwise", or "heads" (an attention module: its in_proj colwise, its out_proj rowwise)."""
        return {**dict.fromkeys(self.heads, "heads"), **dict.fromkeys(self.columns, "colwise"), **dict.fromkeys(self.rows, "rowwise")}


def _splittable(row: Row) -> bool:
    layer = row.layer
    return layer.tensor_parallel == "columns" and layer.tie is None and layer.activation is None and not layer.merges


def shard(net: Network, tp: int) -> Network:
    """The network one of `tp` tensor-parallel ranks holds and runs (see the module's docstring)."""
    plan = Plan.of(net)
    if not (plan.heads or plan.columns):
        raise SpecError("nothing to split among tensor-parallel ranks: tensor parallelism splits attention heads and "
                        "pairs of dense layers (an MLP's two projections)", "data parallelism instead: --strategy ddp",
                        where="--tp", path=net.path)
    if net.autocast is not None:
        raise SpecError("tensor parallelism is modelled in the parameters' dtype (X-true), not under autocast",
                        "--precision bf16-true or 32-true", where="--tp", path=net.path)
    if any(row.recomputed for row in net.rows) or (net.uses and any(use.checkpoint for use in net.uses)):
        raise SpecError("tensor parallelism is not modelled with activation checkpointing", "leave checkpoint out",
                        where="--tp", path=net.path)
    rows = []
    for row in net.rows:
        where = f'layer "{row.name}"'
        layer, x, y = row.layer, row.input, row.output
        if row.name in plan.heads:
            if layer.module != "split" or layer.rotary:
                raise SpecError(f"{where}: tensor parallelism is modelled for attention as GPT-2 writes it (module = "
                                f"\"split\": q, k, v in one projection)", where="--tp", path=net.path)
            _split(layer.num_heads, tp, "num_heads", where)
            _split(layer.num_heads if layer.kv_heads is None else layer.kv_heads, tp, "kv_heads", where)
            layer = ShardedAttention(**_fields(layer), shards=tp)
        elif row.name in plan.columns:
            layer = ColumnDense(**_fields(layer) | {"out_features": _split(layer.out_features, tp, "out_features", where)},
                                shards=tp)
            y = (*y[:-1], layer.out_features)
        elif row.name in plan.local:
            x, y = (*x[:-1], num.div(x[-1], tp)), (*y[:-1], num.div(y[-1], tp))
        elif row.name in plan.rows:
            x = (*x[:-1], _split(x[-1], tp, "in_features", where))
            layer = RowDense(**_fields(layer) | {"in_features": None}, shards=tp)
        else:
            rows.append(row)
            continue
        rows.append(dataclasses.replace(row, layer=layer, input=x, output=y, weights=layer.weights(x),
                                        biases=layer.biases(x), macs=layer.macs(x)))
    return dataclasses.replace(net, rows=tuple(rows), parallel=None)


def _fields(layer) -> dict:
    return {f.name: getattr(layer, f.name) for f in dataclasses.fields(type(layer))}


def simulate(net: Network, batch: Value | None = None, inplace_sums: bool = True, optimizer=None,
             loss_inside: bool = False) -> Timeline:
    """One rank's step under --strategy tp (ranks.simulate_ranks runs it): its tensor-parallel group's shards (every
    rank of a group holds the same sizes), the data-parallel groups replicated, their gradients all-reduced in place
    after backward (no bucket)."""
    return Step(shard(net, net.parallel.tp), batch, inplace_sums, optimizer=optimizer, loss_inside=loss_inside).run()


def all_reduce_bytes(net: Network, layout: Layout) -> tuple[Dim, Dim]:
    """The bytes one rank hands to its all-reduces in a step, (fixed, per sample): its tensor-parallel group's
    (activations forward, input gradients backward) and its data-parallel group's (its shards' gradients, in place)."""
    fixed, per_sample = activation_bytes(net, layout.tp)
    if layout.dp > 1:
        rank = shard(net, layout.tp)
        trained = Trained(reaching(rank))  # the gradients a step makes
        fixed = num.normal(fixed + num.add(n for row in rank.rows for n in trained.tensors(row)) * rank.dtype.bytes)
    return fixed, per_sample


def activation_bytes(net: Network, tp: int) -> tuple[Dim, Dim]:
    """The bytes one rank hands to its tensor-parallel group's all-reduces in a step, (fixed, per sample): each
    row-parallel output in forward, each column-parallel input's gradient in backward (where it needs one)."""
    if tp == 1:
        return (0, 0)
    plan, size, total = Plan.of(net), net.dtype.bytes, 0
    for row in net.rows:
        if row.name in plan.heads or row.name in plan.rows:
            total += num.mul(row.output)
        if (row.name in plan.heads or row.name in plan.columns) and row.requires_grad:
            total += num.mul(row.input)
    return (0, num.normal(total * size))
