"""Autocast (`torch.autocast`, Lightning's `bf16-mixed` and `16-mixed`) as data: the dtype each op runs in.

Under autocast the parameters and the optimizer state stay float32; an op on autocast's lists casts its
floating-point inputs first (aten/src/ATen/autocast_mode.cpp and autocast_mode.h, torch 2.13):

- "lower": computed in the low-precision dtype (bfloat16 or float16): convolutions, linear and the
  matmuls, scaled-dot-product attention. The casts of leaf parameters are cached until the autocast
  context exits (after forward and loss); a backward node that keeps one keeps it longer.
- "float32": computed in float32 (on CUDA the losses, softmax, log_softmax, layer_norm, group_norm,
  exp, pow...; on the CPU a different list: 3-d pooling, padding, the losses).
- "promote": the inputs are cast to the widest of them (cat, stack).
- any other op runs in the dtype of its input; element-wise ops of several inputs follow torch's type
  promotion (bfloat16 + float32 gives float32, without a cast copy).

A layer kind names the ops it runs (Layer.autocast_ops); its activation is an op of its own name. An
op missing from the lists below runs in its input's dtype, as torch does.
"""

from __future__ import annotations

LOWER, FLOAT32, PROMOTE = "lower", "float32", "promote"

_LOWER_COMMON = ("conv1d", "conv2d", "conv3d", "conv_tbc", "linear", "addmm", "mm", "bmm", "matmul", "baddbmm",
                 "addbmm", "prelu", "scaled_dot_product_attention", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d")
_LOSSES = ("cross_entropy_loss", "nll_loss", "nll_loss2d", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "kl_div", "binary_cross_entropy_with_logits", "cosine_embedding_loss", "hinge_embedding_loss",
           "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss",
           "multi_margin_loss", "poisson_nll_loss")

POLICY: dict[str, dict[str, str]] = {
    "cpu": {
        **dict.fromkeys((*_LOWER_COMMON, "lstm", "gru", "_native_multi_head_attention"), LOWER),
        **dict.fromkeys(("avg_pool3d", "max_pool3d", "adaptive_avg_pool3d", "adaptive_max_pool3d", "max_unpool2d",
                         "max_unpool3d", "reflection_pad1d", "reflection_pad2d", "replication_pad1d",
                         "replication_pad2d", "replication_pad3d", "grid_sampler", "fractional_max_pool2d",
                         "fractional_max_pool3d", "cdist", "prod", *_LOSSES), FLOAT32),
        **dict.fromkeys(("cat", "stack", "index_copy"), PROMOTE),
    },
    "cuda": {
        **dict.fromkeys((*_LOWER_COMMON, "addmv", "addr", "mv", "einsum", "lstm_cell", "gru_cell", "rnn_tanh_cell",
                         "rnn_relu_cell", "lstm", "gru"), LOWER),
        **dict.fromkeys(("acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p",
                         "reciprocal", "rsqrt", "sinh", "tan", "pow", "softplus", "layer_norm", "group_norm",
                         "rms_norm", "cosine_similarity", "dist", "pdist", "cdist", "renorm", "logsumexp",
                         "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "upsample_linear1d",
                         "upsample_bilinear2d", "upsample_trilinear3d", "upsample_bicubic2d",
                         # fp32_set_opt_dtype: float32 unless the caller names a dtype
                         "softmax", "log_softmax", "cumsum", "cumprod", "prod", "sum", *_LOSSES), FLOAT32),
        **dict.fromkeys(("cat", "stack", "index_copy", "addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot",
                         "vdot", "grid_sampler", "index_put", "tensordot", "scatter_add"), PROMOTE),
    },
}

WIDTH = {"float64": 3, "float32": 2, "bfloat16": 1, "float16": 1}


def policy(device: str, ops: tuple[str, ...]) -> str | None:
    """The cast policy of a layer that runs `ops` on `device` (lower precision wins, then float32, then promote)."""
    found = {POLICY[device].get(op) for op in ops}
    return next((p for p in (LOWER, FLOAT32, PROMOTE) if p in found), None)


def compute_dtype(device: str, ops: tuple[str, ...], inputs: tuple[str, ...], low: str) -> tuple[str, str | None]:
    """(the dtype a layer computes and returns, its policy) for inputs of dtypes `inputs`, autocast's dtype `low`.

    >>> compute_dtype("cpu", ("conv2d",), ("float32",), "bfloat16")
    ('bfloat16', 'lower')
    >>> compute_dtype("cpu", ("relu",), ("bfloat16",), "bfloat16")
    ('bfloat16', None)
    >>> compute_dtype("cpu", ("add",), ("bfloat16", "float32"), "bfloat16")
    ('float32', None)
    """
    rule = policy(device, ops)
    if rule == LOWER:
        return low, rule
    if rule == FLOAT32:
        return "float32", rule
    return max(inputs, key=lambda d: WIDTH[d]), rule


def op(device: str, low: str, name: str, *inputs: str) -> tuple[str, tuple[bool, ...]]:
    """One op under autocast, for the layers' programs: (the dtype it computes and returns, per input whether
    autocast copies it first).

    >>> op("cuda", "bfloat16", "pow", "bfloat16")
    ('float32', (True,))
    >>> op("cpu", "bfloat16", "pow", "bfloat16")
    ('bfloat16', (False,))
    >>> op("cuda", "bfloat16", "mul", "bfloat16", "float32")
    ('float32', (False, False))
    """
    compute, rule = compute_dtype(device, (name,), inputs, low)
    return compute, casts(rule, compute, inputs)


def casts(rule: str | None, compute: str, inputs: tuple[str, ...]) -> tuple[bool, ...]:
    """Which inputs autocast copies into `compute` before the op (type promotion alone makes no copy)."""
    return tuple(rule is not None and d != compute for d in inputs)


def plan(report) -> list[tuple[str, str | None, tuple[bool, ...], tuple[str, ...]] | None]:
    """Per row of `report` under its autocast: (the dtype it computes in, its policy, which inputs autocast
    copies, the inputs' dtypes); None for a view, which keeps its input's dtype."""
    low, device = str(report.autocast), "cuda" if str(report.device) == "cuda" else "cpu"
    dtype = {"input": str(report.dtype)}
    out: list = []
    for row in report.rows:
        names = row.inputs
        if row.layer.is_view():
            dtype[row.name] = dtype[names[0]]
            out.append(None)
            continue
        dtypes = tuple(dtype[n] for n in names)
        compute, rule = compute_dtype(device, row.layer.autocast_ops(row.input), dtypes, low)
        dtype[row.name] = compute_dtype(device, (row.layer.activation,), (compute,), low)[0] if row.layer.activation else compute
        out.append((compute, rule, casts(rule, compute, dtypes), dtypes))
    return out
