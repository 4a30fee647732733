"""The network as a picture (`archcalc draw`): one box per tensor, sized by its shape, as NN-SVG and
PlotNeuralNet draw CNNs, left to right, the output shape on each arrow, skips as brackets above.

matplotlib is an optional extra (`pip install 'archcalc[draw]'`), imported here only, when drawing.
A box has its kind's colour (Layer.colour); the kinds that say so (Layer.joins_box_before: activation,
dropout, batchnorm) join the box before them where they keep its shape; with `depth`, the layers under
one dotted name (a block: `layer1.0.conv1`) fold into one box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..core import fmt, num
from ..core.errors import ArchcalcError
from ..report import Report, Row

FORMATS = (".svg", ".png", ".pdf")
MAX_BOXES = 500  # DenseNet-121 unfolded is 185 boxes (4 s); 10,000 would take many minutes and no one could read them
# the colours of the two boxes that are no layer's
INPUT_COLOUR, BLOCK_COLOUR = "#eeeeee", "#f9d9a8"


@dataclass
class Node:
    name: str
    kind: str
    label: str  # the hyperparameters, and what joined the box
    shape: tuple
    rows: list[Row] = field(default_factory=list)
    inputs: tuple[str, ...] = ()  # the names of the nodes it reads (a graph's); () : the node before
    skips: set[str] = field(default_factory=set)  # nodes read from inside a folded block (a residual): drawn as arcs
    colour: str = INPUT_COLOUR


def nodes(report: Report, depth: int | None = None) -> list[Node]:
    """The boxes to draw, in order: a row each, less the pass-through layers, blocks folded at `depth`."""
    out: list[Node] = []
    owner: dict[str, str] = {"input": "input"}  # a row's name -> the node that shows it
    for row in report.rows:
        group = ".".join(row.name.split(".")[:depth]) if depth else row.name
        inputs = tuple(owner.get(name, name) for name in getattr(row, "inputs", None) or ())
        if out and group != row.name and out[-1].name == group:
            node = out[-1]  # a folded block: its box keeps growing; what it reads from outside is a skip
            node.shape, node.rows = row.output, [*node.rows, row]
            node.skips |= {source for source in inputs if source != group}
        elif out and row.layer.joins_box_before and row.output == row.input and not inputs[1:]:
            node = out[-1]
            node.label = ", ".join(p for p in (node.label, f"{row.kind} {row.layer.summary(row.input)}".strip()) if p)
            node.rows.append(row)
        else:
            block = group != row.name
            label = "" if block else row.layer.summary(row.input)
            node = Node(group, "block" if block else row.kind, label, row.output, [row], tuple(i for i in inputs if i != group),
                        colour=BLOCK_COLOUR if block else row.layer.colour)
            out.append(node)
        owner[row.name] = node.name
    kinds = {use.path: use.block for use in getattr(report, "uses", ())}
    for node in out:
        if node.kind == "block":
            kind = kinds.get(node.name)  # None: layers grouped by their dotted names, not a block use
            node.label = f"{kind} block, {len(node.rows)} layers" if kind else f"{len(node.rows)} layers"
    return out


def _size(n, low: float, high: float, largest: float, power: float | None = None) -> float:
    """A length for a size n, from `low` (n = 1) to `high` (n = largest): as a power of n (0.5: area-like;
    55 against 224 still looks smaller), or on a log scale (None: for sizes spread over decades)."""
    if not num.is_concrete(n):
        return (low + high) / 2
    if power is None:
        share = math.log2(max(float(n), 1) + 1) / math.log2(largest + 1)
    else:
        share = (max(float(n), 1) / largest) ** power
    return low + (high - low) * share


def draw(report: Report, path: str, depth: int | None = None) -> str:
    """Write the picture to `path` (.svg, .png or .pdf); returns the path."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ArchcalcError(f"{path}: cannot tell the format from the name\n  hint: end it with {', '.join(FORMATS)}")
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would block the write until someone reads it
        raise ArchcalcError(f"{path}: not a regular file (a folder, a pipe or a device): cannot draw into it")
    try:
        from matplotlib import rc_context
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyArrowPatch, Polygon
    except ImportError:
        raise ArchcalcError("archcalc draw needs matplotlib, an optional extra\n"
                            "  hint: pip install 'archcalc[draw]' (or pip install matplotlib)") from None
    boxes = nodes(report, depth)
    if len(boxes) > MAX_BOXES:
        raise ArchcalcError(f"{len(boxes):,} boxes are too many to draw (at most {MAX_BOXES})\n"
                            "  hint: --depth 1 folds each block into one box")
    shapes = [report.input, *(n.shape for n in boxes)]
    spatial = max([float(d) for s in shapes for d in s[1:] if num.is_concrete(d)] or [1])
    channels = max([float(s[0]) for s in shapes if len(s) > 1 and num.is_concrete(s[0])] or [1])
    flat = max([float(s[0]) for s in shapes if len(s) == 1 and num.is_concrete(s[0])] or [1])

    def geometry(shape) -> tuple[float, float, float]:
        """(thickness along x, height, depth) of a box for a [C, H, W] tensor; a flat [F] is a tall thin bar."""
        if len(shape) == 1:
            return 0.18, _size(shape[0], 0.6, 4.2, flat), 0.18
        h = _size(shape[1], 0.35, 4.2, spatial, 0.6)
        d = _size(shape[-1], 0.25, 2.2, spatial, 0.6) if len(shape) > 2 else 0.3
        return _size(shape[0], 0.1, 1.2, channels, 0.6), h, d

    x, placed = 0.0, {}
    items = [Node("input", "input", "", report.input), *boxes]
    for node in items:
        w, h, d = geometry(node.shape)
        placed[node.name] = (x, w, h, d)
        gap = max(1.3, 0.11 * len(fmt.shape(node.shape)) + 0.5)  # room for the shape on the arrow
        x += w + d * 0.5 + gap
    top = max(h + d * 0.5 for _, _, h, d in placed.values())
    # A residual inside a folded block (it reads the box before it) bypasses the box; other skips run as
    # brackets above the boxes, each at the lowest height where it overlaps no other, the shorter ones lower.
    bypass = [node.name for i, node in enumerate(items) if items[i - 1].name in node.skips]
    skips = [(src, node.name) for i, node in enumerate(items)
             for src in dict.fromkeys([*node.inputs, *sorted(node.skips)]) if src in placed and src != items[i - 1].name]
    heights: list[list[tuple[float, float]]] = []
    levels = {}
    for src, dst in sorted(dict.fromkeys(skips), key=lambda pair: placed[pair[1]][0] - placed[pair[0]][0]):
        span = (placed[src][0], placed[dst][0])
        level = next((i for i, taken in enumerate(heights) if all(span[1] <= a or b <= span[0] for a, b in taken)), None)
        if level is None:
            heights.append([])
            level = len(heights) - 1
        heights[level].append(span)
        levels[(src, dst)] = top / 2 + 0.45 + 0.38 * level
    ceiling = max([*levels.values(), *(top / 2 + 0.3 for _ in bypass[:1])], default=top / 2)
    fig = Figure(figsize=(max(6.0, x * 0.62), 4.6 + 0.3 * (ceiling - top / 2)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.6, x - gap + 0.6)
    ax.set_ylim(-top / 2 - 1.9, ceiling + 1.2)
    ax.axis("off")
    title = f"{report.model}: input {fmt.shape(report.input)}, {fmt.short(report.totals['params'])} parameters"
    ax.text((x - gap) / 2, ceiling + 0.75, title, ha="center", va="center", fontsize=11, weight="bold")
    for i, node in enumerate(items):
        x0, w, h, d = placed[node.name]
        y0, dx, dy = -h / 2, d * 0.5, d * 0.5  # the front face's bottom left; the oblique depth
        faces = [
            [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)],  # front
            [(x0, y0 + h), (x0 + w, y0 + h), (x0 + w + dx, y0 + h + dy), (x0 + dx, y0 + h + dy)],  # top
            [(x0 + w, y0), (x0 + w + dx, y0 + dy), (x0 + w + dx, y0 + h + dy), (x0 + w, y0 + h)],  # side
        ]
        for face, shade in zip(faces, (1.0, 0.85, 0.7)):
            ax.add_patch(Polygon(face, closed=True, facecolor=_shade(node.colour, shade), edgecolor="#444444", linewidth=0.7))
        centre = x0 + (w + dx) / 2
        ax.text(centre, -top / 2 - 0.35, node.name, ha="center", va="top", fontsize=8.5, weight="bold")
        if node.label:
            ax.text(centre, -top / 2 - 0.75, _wrap(node.label), ha="center", va="top", fontsize=7, color="#333333")
        if i + 1 < len(items):
            nxt = items[i + 1]
            if not nxt.inputs or node.name in nxt.inputs:
                start, end = x0 + w + dx + 0.08, placed[nxt.name][0] - 0.08
                ax.add_patch(FancyArrowPatch((start, 0), (end, 0), arrowstyle="-|>", mutation_scale=9, color="#555555"))
            ax.text((x0 + w + dx + placed[nxt.name][0]) / 2, -0.14, fmt.shape(node.shape), ha="center", va="top",
                    fontsize=7, color="#1f4e79")
    for (src, dst), level in levels.items():
        a, b = placed[src], placed[dst]
        start = a[0] + (a[1] + a[3] * 0.5) / 2, a[2] / 2 + a[3] * 0.5 + 0.08
        end = b[0] + (b[1] + b[3] * 0.5) / 2, b[2] / 2 + b[3] * 0.5 + 0.08
        ax.plot([start[0], start[0], end[0]], [start[1], level, level], color="#7f3f98", linewidth=1.1)
        ax.add_patch(FancyArrowPatch((end[0], level), end, arrowstyle="-|>", mutation_scale=9, color="#7f3f98",
                                     linewidth=1.1, shrinkA=0, shrinkB=0))
    for name in bypass:
        x0, w, h, d = placed[name]
        left, right, level = x0 - 0.3, x0 + w + d * 0.5 + 0.3, h / 2 + d * 0.5 + 0.3
        ax.plot([left, left, right], [0, level, level], color="#7f3f98", linewidth=1.1)
        ax.add_patch(FancyArrowPatch((right, level), (right, 0.02), arrowstyle="-|>", mutation_scale=9, color="#7f3f98",
                                     linewidth=1.1, shrinkA=0, shrinkB=0))
    try:
        with rc_context({"svg.fonttype": "none"}):  # text stays text in an SVG: searchable, and smaller
            fig.savefig(path, dpi=160, bbox_inches="tight", facecolor="white")
    except OSError as error:
        raise ArchcalcError(f"{path}: cannot write it: {error.strerror}") from None
    return path


def _shade(colour: str, factor: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(c * factor):02x}" for c in (r, g, b))


def _wrap(text: str, width: int = 14) -> str:
    """Short lines under a box: break after commas."""
    lines, line = [], ""
    for part in text.split(", "):
        if line and len(line) + len(part) + 2 > width:
            lines.append(line + ",")
            line = part
        else:
            line = f"{line}, {part}" if line else part
    return "\n".join([*lines, line])
