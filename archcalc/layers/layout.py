"""Where a view's values lie in memory: the strides of [B, *sample] after permute, flatten and reshape.

Autograd keeps storages, and a view shares its input's. After a permute the values are no longer
in row-major order, and a later reshape can then only be a copy, with a storage of its own (as can
nn.Linear, which folds [B, T, d] into [B·T, d]). `view` follows PyTorch's rule for when a reshape is
a view (computeStride in aten/src/ATen/TensorUtils.cpp). Strides are worked out for a batch of 2:
with a batch of 1, torch can view a few shapes a larger batch must copy.

A layout is None (contiguous, row-major) or a tuple of strides for [B, *sample]; COPY means the
reshape cannot be a view.
"""

from __future__ import annotations

from ..core import num

COPY = "copy"
BATCH = 2


def _full(x) -> tuple:
    return (BATCH, *x)


def contiguous(shape) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step = step * size
    return tuple(reversed(strides))


def _normal(shape, strides):
    """None when `strides` are row-major for `shape` (axes of size 1 do not count, as in torch)."""
    expected = contiguous(shape)
    if all(size == 1 or a == b for size, a, b in zip(shape, strides, expected)):
        return None
    return tuple(strides)


def expanded(strides) -> bool:
    """Whether a layout repeats elements (a stride of 0: `parameter` expanded over the batch). An element-wise op
    keeps a permuted input's layout, but makes a contiguous output of an expanded one (measured: relu)."""
    return strides is not None and any(num.is_concrete(s) and s == 0 for s in strides)


def permuted(x, strides, order):
    """The layout after a permute of the sample axes: output axis i is input sample axis order[i]."""
    full = contiguous(_full(x)) if strides is None else strides
    shape = (BATCH, *(x[i] for i in order))
    return _normal(shape, (full[0], *(full[1 + i] for i in order)))


def view(x, strides, y):
    """The layout of a reshape of [B, *x] to [B, *y]: the same if contiguous, COPY when no view fits."""
    if strides is None:
        return None
    old, new = _full(x), _full(y)
    if not all(num.is_concrete(d) for d in (*old, *new, *strides)):
        return COPY  # symbolic sizes: assume the worst
    out = _compute_stride(old, strides, new)
    return COPY if out is None else _normal(new, out)


def _compute_stride(oldshape, oldstride, newshape):
    """PyTorch's computeStride: the strides of a view of (oldshape, oldstride) as newshape, or None."""
    newstride = [0] * len(newshape)
    view_d = len(newshape) - 1
    chunk_base_stride = oldstride[-1]
    tensor_numel = view_numel = 1
    for tensor_d in range(len(oldshape) - 1, -1, -1):
        tensor_numel *= oldshape[tensor_d]
        if tensor_d == 0 or (oldshape[tensor_d - 1] != 1 and oldstride[tensor_d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or newshape[view_d] == 1):
                newstride[view_d] = view_numel * chunk_base_stride
                view_numel *= newshape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = oldstride[tensor_d - 1]
                tensor_numel = view_numel = 1
    return newstride if view_d == -1 else None
