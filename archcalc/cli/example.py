"""`archcalc example pool|conv|dropout`: a small numeric example worked step by step, as the course does.

A layer's fields are flags named as in a spec, in kebab case; each command hands them to the library as one dict."""

from __future__ import annotations

import click

from .options import TABLE_OR_JSON, Flag, Options, bundle, digits, shared
from .output import console


@click.group("example")
def example() -> None:
    """Work a small example by hand, step by step, as the course does: pool, conv, dropout."""


MATRIX = click.option("--matrix", "-m", "matrix", required=True, metavar='"1 3; 4 6"',
                      help='The input: rows split by ";", numbers by spaces (integers, decimals, fractions such as 1/3).')
STRIDE = Flag("--stride", default="1", show_default=True, metavar="S")
PADDING = Flag("--padding", default="0", show_default=True, metavar="P")
DILATION = Flag("--dilation", default="1", show_default=True, metavar="D")


@example.command("pool")
@shared(TABLE_OR_JSON)
@MATRIX
@bundle("fields", dict,
        Flag("--op", type=click.Choice(["max", "avg"]), default="max", show_default=True),
        Flag("--kernel-size", default="2", show_default=True, metavar="K", help="K, or H,W."),
        STRIDE.but(default=None, show_default=False, help="S, or H,W (default: the kernel size, as in PyTorch)."),
        PADDING, DILATION.but(help="Max pooling only."),
        Flag("--ceil-mode", is_flag=True, help="Round the output size up (PyTorch's ceil_mode)."))
def pool(options: Options, matrix: str, fields: dict) -> None:
    """Max or average pooling of a matrix (the notes' 6×6 example: --kernel-size 2 --stride 2)."""
    from ..teaching import example as worked

    _show(worked.pool(worked.matrix(matrix), op=fields["op"], kernel_size=_axes(fields["kernel_size"]),
                      stride=_axes(fields["stride"]), padding=_axes(fields["padding"]), dilation=_axes(fields["dilation"]),
                      ceil_mode=fields["ceil_mode"]), options)


@example.command("conv")
@shared(TABLE_OR_JSON)
@MATRIX
@bundle("fields", dict,
        Flag("--weight", "--kernel", "weight", required=True, metavar='"1 0; 0 -1"', help="The kernel, as a matrix."),
        STRIDE, PADDING, DILATION,
        Flag("--bias", default="0", show_default=True, metavar="B", help="Added to every output."))
def conv(options: Options, matrix: str, fields: dict) -> None:
    """A convolution of a matrix with one kernel (PyTorch's conv2d, one channel in and out)."""
    from ..teaching import example as worked

    _show(worked.conv(worked.matrix(matrix), worked.matrix(fields["weight"], "--weight"), stride=_axes(fields["stride"]),
                      padding=_axes(fields["padding"]), dilation=_axes(fields["dilation"]),
                      bias=_number(fields["bias"], "--bias")), options)


@example.command("dropout")
@shared(TABLE_OR_JSON)
@MATRIX
@click.option("--p", "p", default="0.5", show_default=True, metavar="P", help="The probability to drop a value (PyTorch's p).")
@click.option("--mask", metavar='"1 0 1 0 1"', help="Which values are kept (1) and dropped (0); default: drawn with --seed.")
@click.option("--seed", type=int, default=0, show_default=True, help="The draw of the mask when none is given.")
def dropout(options: Options, matrix: str, p: str, mask: str | None, seed: int) -> None:
    """Dropout of a vector or matrix in training, as PyTorch does it (the notes' example: --mask "1 0 1 0 1")."""
    from ..teaching import example as worked

    given = worked.matrix(mask, "--mask") if mask is not None else None
    _show(worked.dropout(worked.matrix(matrix), p=_number(p, "--p"), mask=given, seed=seed), options)


def _show(worked, options: Options) -> None:
    from ..render import example as render

    if options.form == "json":
        click.echo(render.json(worked), nl=False)
    else:
        console().print(render.table(worked))


def _axes(text: str | None) -> int | tuple[int, ...] | None:
    """'2' -> 2; '2,1' or '2 1' -> (2, 1): one value, or one per axis (H, W)."""
    if text is None:
        return None
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts or not all(digits(p) for p in parts) or len(parts) > 2:
        raise click.BadParameter(f"{text!r}: give a whole number, or two (H,W)")
    values = tuple(int(p) for p in parts)
    return values[0] if len(values) == 1 else values


def _number(text: str, flag: str):
    """One exact number from a flag: '0.5', '1/3', '-2'."""
    from ..teaching import example as worked

    values = worked.matrix(text, flag)
    if len(values) != 1 or len(values[0]) != 1:
        raise click.BadParameter(f"{text!r}: one number", param_hint=flag)
    return values[0][0]
