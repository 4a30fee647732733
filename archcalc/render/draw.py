"""The network as a picture (`archcalc draw`): one box per tensor, sized by its shape, as NN-SVG and
PlotNeuralNet draw CNNs, and one arrow per edge of the report's graph, nothing else.

matplotlib is an optional extra (`pip install '.[draw]'` from the checkout), imported here only, when drawing; it draws
the shapes and measures the text. The layout is computed here (`layout`), before matplotlib renders it, so
that tests read the boxes, arrows and labels it will draw:

- boxes: a row each, less the layers that join the box before them (Layer.joins_box_before: activation,
  dropout, batchnorm, where they keep its shape and only they read it), blocks folded at `depth` (the layers
  under one dotted name: `layer1.0.conv1`); a box has its kind's colour (Layer.colour);
- columns: a box stands one column right of the furthest box it reads (a layered drawing: the longest path);
  the longest path from the input to the output runs along the main line, the other boxes (a downsample
  branch, GPT-2's positions) in lanes below it, each at its column;
- arrows: one per edge of the graph (a row's `inputs`; Layer.draws_input False: none) between two boxes, and
  one from the last box to the output. An arrow between neighbours on a line is straight; every other runs
  orthogonally: between neighbouring columns by one vertical line in the gap, farther on a horizontal track
  of its own (skips above the main line, branches between the lanes, lines to later rows below a row), its
  vertical parts in the gaps between columns, never through a box or a label nor along another line; each
  leaves the right of its box and ends on the left face of the box that reads it, pointing at it;
- labels: under each box its name, output shape and hyperparameters, wrapped to a measured width; a size
  that is a long formula is named (H₁ = floor(H/4 - 7/4) + 1) and the names listed under the picture;
- width: at most MAX_WIDTH inches; a longer network wraps onto rows of columns, cut where fewest arrows
  cross; the arrows that cross a cut run between the rows.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..core import fmt, num
from ..core.errors import ArchcalcError
from ..report import Report, Row

FORMATS = (".svg", ".png", ".pdf")
MAX_BOXES = 500  # DenseNet-121 unfolded is 185 boxes; 10,000 would take minutes to draw and no one could read them
# the colours of the boxes that are no layer's
INPUT_COLOUR, BLOCK_COLOUR = "#eeeeee", "#f9d9a8"
OUTPUT = "output"  # the edge from the last row to the model's output

UNIT = 0.62  # inches per unit of the layout
DPI = 160
MAX_WIDTH = 20.0  # inches (3,200 px at 160 dpi): a network wider than this wraps onto rows
RESERVE = 1.6  # units on the left kept for the arrows that enter a row from the one above
# lengths in units: a slot (between two vertical lines in a gap), a track (between two horizontal lines in a
# channel), the padding at a gap's or channel's sides, the least distance between two ports on a face
SLOT, TRACK, PAD, PORT, MIN_GAP, CLEAR = 0.13, 0.15, 0.16, 0.09, 0.75, 0.05
NAME, SHAPE, TEXT, TITLE, LEGEND = 8.5, 7.5, 7.0, 11.0, 7.5  # font sizes, points
LABEL_WIDTH = 1.8  # units: labels wrap to this width (a long name to its own)
SPACING = 1.3  # a line of text is this many times its font size high
LONG = 12  # a size written with more characters than this gets a name


@dataclass
class Node:
    name: str
    kind: str
    label: str  # the hyperparameters, and what joined the box
    shape: tuple
    rows: list[Row] = field(default_factory=list)
    inputs: tuple[str, ...] = ()  # the names of the boxes it reads, in order (arrows into it)
    colour: str = INPUT_COLOUR


def edges(report: Report) -> list[tuple[str, str]]:
    """The graph's edges the picture draws, (source row, reading row) in the order of the readers: each
    row's inputs ('input': the model's input), but for a kind that reads its input for the size only
    (Layer.draws_input), and the last row to OUTPUT."""
    out: list[tuple[str, str]] = []
    for i, row in enumerate(report.rows):
        if row.layer.draws_input:
            reads = getattr(row, "inputs", None) or ((report.rows[i - 1].name,) if i else ("input",))
            out += [(name, row.name) for name in reads]
    return [*out, (report.rows[-1].name if report.rows else "input", OUTPUT)]


def nodes(report: Report, depth: int | None = None) -> list[Node]:
    """The boxes to draw, in order: a row each, less the pass-through layers, blocks folded at `depth`."""
    readers = Counter(source for source, _ in edges(report))
    out: list[Node] = []
    owner: dict[str, str] = {"input": "input"}  # a row's name -> the box that shows it
    for row in report.rows:
        group = ".".join(row.name.split(".")[:depth]) if depth else row.name
        reads = [source for source, reader in edges_of(report, row)]
        inputs = tuple(dict.fromkeys(owner.get(name, name) for name in reads))
        if out and group != row.name and out[-1].name == group:
            node = out[-1]  # a folded block: its box keeps growing
            node.shape, node.rows = row.output, [*node.rows, row]
            node.inputs = tuple(dict.fromkeys([*node.inputs, *(i for i in inputs if i != group)]))
        elif (out and out[-1].kind != "block" and row.layer.joins_box_before and row.output == row.input
              and reads == [out[-1].rows[-1].name] and readers[reads[0]] == 1):
            node = out[-1]  # it reads the box's tensor, and nothing else does: one box shows both
            node.label = ", ".join(p for p in (node.label, f"{row.kind} {row.layer.summary(row.input)}".strip()) if p)
            node.shape, node.rows = row.output, [*node.rows, row]
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


def edges_of(report: Report, row: Row) -> list[tuple[str, str]]:
    """The drawn edges into one row."""
    if not row.layer.draws_input:
        return []
    if getattr(row, "inputs", None):
        return [(name, row.name) for name in row.inputs]
    i = report.rows.index(row)
    return [(report.rows[i - 1].name if i else "input", row.name)]


# The layout -----------------------------------------------------------------------------------------------

Bounds = tuple[float, float, float, float]  # x0, y0, x1, y1 (y up)


@dataclass
class Label:
    """One line of text: its anchor (ha at x, its top at y) and the rectangle it takes, measured."""
    text: str
    x: float
    y: float
    size: float
    bounds: Bounds
    weight: str = "normal"
    colour: str = "#333333"
    ha: str = "center"


@dataclass
class Box:
    """A tensor's box: the front face's bottom left (x0, y0), its width w and height h, and its depth d, drawn
    obliquely up and right by d/2. The input's box has node.kind 'input'; the output is a marker ('output'),
    not drawn, its label beside the arrow's head."""
    node: Node
    column: int
    lane: int
    x0: float = 0.0
    y0: float = 0.0
    w: float = 0.0
    h: float = 0.0
    d: float = 0.0

    @property
    def bounds(self) -> Bounds:
        return (self.x0, self.y0, self.x0 + self.w + self.d / 2, self.y0 + self.h + self.d / 2)

    @property
    def centre(self) -> float:
        return self.y0 + self.h / 2


@dataclass
class Arrow:
    """One edge of the graph: (source row, reading row), from box `source` to box `target` (indices of
    Drawing.boxes) along `points`; its head is at the last point, on the target's left face."""
    edge: tuple[str, str]
    source: int
    target: int
    points: list[tuple[float, float]] = field(default_factory=list)
    straight: bool = False


@dataclass
class Drawing:
    boxes: list[Box]
    arrows: list[Arrow]
    labels: list[Label]
    width: float  # units; the picture spans x in [0, width], y in [-height, 0]
    height: float
    rows: int = 1  # the rows of columns it wraps onto

    @property
    def inches(self) -> tuple[float, float]:
        return self.width * UNIT, self.height * UNIT


class Measure:
    """Text widths in layout units, from the font matplotlib draws with (matplotlib.textpath)."""

    def __init__(self) -> None:
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextToPath

        self._path, self._font, self._seen = TextToPath(), FontProperties, {}

    def width(self, text: str, size: float, weight: str = "normal") -> float:
        key = (text, size, weight)
        if key not in self._seen:
            w, _, _ = self._path.get_text_width_height_descent(text, self._font(size=size, weight=weight), ismath=False)
            self._seen[key] = (w * 1.06 + 1.0) / 72 / UNIT  # a margin for the rasteriser's rounding
        return self._seen[key]

    @staticmethod
    def height(size: float) -> float:
        return size * SPACING / 72 / UNIT

    def wrap(self, text: str, width: float, size: float, weight: str = "normal", seps: tuple[str, ...] = (", ", " ")) -> list[str]:
        """Lines of at most `width`: broken after the first separator that gives pieces, then anywhere."""
        if self.width(text, size, weight) <= width:
            return [text]
        for sep in seps:
            parts = text.split(sep)
            if len(parts) > 1:
                pieces = [p + sep.rstrip() for p in parts[:-1]] + [parts[-1]]
                lines: list[str] = []
                for piece in pieces:
                    joined = f"{lines[-1]}{' ' if sep.endswith(' ') else ''}{piece}" if lines else piece
                    if lines and self.width(joined, size, weight) <= width:
                        lines[-1] = joined
                    else:
                        lines.append(piece)
                return [part for line in lines for part in self.wrap(line, width, size, weight, seps[seps.index(sep) + 1:])]
        cut = max(1, len(text) - 1)  # no separator left: the longest head that fits
        while cut > 1 and self.width(text[:cut], size, weight) > width:
            cut -= 1
        return [text[:cut], *self.wrap(text[cut:], width, size, weight, ())]


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


class Names:
    """Short names for the sizes that are long formulas: H₁ = floor(H/4 - 7/4) + 1, found by sympy's common
    subexpression elimination (on the factored formulas), so that 256*H₄*W₄ names the flattened size of a
    symbolic AlexNet. Names are numbered in the order the picture shows them."""

    def __init__(self, values) -> None:
        self.names: dict[str, object] = {}  # a formula's text -> what the picture writes instead (a formula in names)
        self.legend: list[tuple[str, str]] = []  # (name, formula)
        long = list(dict.fromkeys(v for v in values if not num.is_concrete(v) and len(fmt.group(v)) > LONG))
        if not long:
            return
        import sympy

        self._sympy, self._count, self._given, self._nice = sympy, Counter(), {}, {}
        replaced, reduced = sympy.cse([sympy.factor(v) for v in long], symbols=sympy.numbered_symbols("_archcalc_draw_"))
        self._defs = dict(replaced)
        for value, formula in zip(long, reduced):
            formula = self._rename(formula)
            self.names[fmt.group(value)] = self._new(formula) if len(fmt.group(formula)) > LONG else formula

    def _rename(self, formula):
        """The formula with cse's placeholders named, in the order they are written."""
        import re

        text = str(formula)
        for placeholder in sorted(formula.free_symbols & self._defs.keys(),
                                  key=lambda s: re.search(rf"\b{s}\b", text).start()):
            if placeholder not in self._nice:
                self._nice[placeholder] = self._new(self._rename(self._defs[placeholder]))
        return formula.xreplace(self._nice)

    def _new(self, formula):
        """A name for a formula, listed in the legend: the one free size it is made from and a number (H₂), n₁ else."""
        if formula not in self._given:
            free = {str(s) for s in formula.free_symbols}
            stem = next(iter(free)) if len(free) == 1 and not free & {str(n) for n in self._given.values()} else "n"
            self._count[stem] += 1
            self._given[formula] = self._sympy.Symbol(f"{stem}{str(self._count[stem]).translate(_SUBSCRIPT)}")
            self.legend.append((str(self._given[formula]), fmt.group(formula)))
        return self._given[formula]

    def size(self, value) -> str:
        return fmt.group(self.names.get(fmt.group(value), value))

    def total(self, value, limit: int = 60) -> str:
        """A formula not among the sizes (the parameters) in the sizes' names where they are floor(...) + k,
        named whole if it is still longer than `limit`."""
        if num.is_concrete(value) or len(fmt.group(value)) <= limit or not self.names:
            return fmt.short(value) if num.is_concrete(value) else fmt.group(value)
        sympy = self._sympy
        rules = {}
        for formula, name in self._given.items():
            atoms = formula.atoms(sympy.floor)
            if len(atoms) == 1 and (formula - next(iter(atoms))).is_number:
                rules[next(iter(atoms))] = name - (formula - next(iter(atoms)))
        out = sympy.expand(value.xreplace(rules))
        return fmt.group(out if len(fmt.group(out)) <= limit else self._new(out))

    def shape(self, shape) -> str:
        if len(shape) == 1:
            return self.size(shape[0])
        return "×".join(fmt.term(self.names.get(fmt.group(d), d)) for d in shape)

    def text(self, text: str) -> str:
        """A summary with the named formulas written by their names (the longest first)."""
        for formula in sorted(self.names, key=len, reverse=True):
            short = fmt.term(self.names[formula])
            text = text.replace(f"({formula})", short).replace(formula, short)
        return text


_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def layout(report: Report, depth: int | None = None, measure: Measure | None = None) -> Drawing:
    """Where every box, arrow and label goes (see the module's docstring); `measure` measures text."""
    grid = _Grid(report, depth, measure or Measure())
    reserve = RESERVE if sum(grid.colw) + sum(grid.gapw) > MAX_WIDTH / UNIT - 0.6 else 0.3
    while True:  # the left margin grows until the lines that enter rows from above fit in it
        try:
            return _Placement(grid, reserve).drawing()
        except _Margin as wider:
            if wider.needed > MAX_WIDTH / UNIT / 3:
                raise ArchcalcError(f"too many lines ({wider.lines}) enter rows from above to draw them apart within "
                                    f"{MAX_WIDTH:g} inches\n  hint: --depth 1 folds each block into one box") from None
            reserve = wider.needed


class _Margin(Exception):
    """The left margin is too narrow for the lines that enter rows from above: `needed` units would do."""

    def __init__(self, needed: float, lines: int) -> None:
        self.needed, self.lines = needed, lines


class _Grid:
    """The layout before it is placed: the boxes (the input's, the nodes', the output's marker) and the arcs between
    them (edge, source box, target box), each box's column and lane, its size and its label's lines, the columns'
    and the gaps' widths. Placing it (_Placement) grows the boxes to hold their ports, and says where they stand."""

    def __init__(self, report: Report, depth: int | None, measure: Measure) -> None:
        self.report, self.measure = report, measure
        found = nodes(report, depth)
        if len(found) > MAX_BOXES:
            raise ArchcalcError(f"{len(found):,} boxes are too many to draw (at most {MAX_BOXES})\n"
                                "  hint: --depth 1 folds each block into one box")
        last = report.rows[-1].output if report.rows else report.input
        self.items = [Node("input", "input", "", report.input), *found, Node(OUTPUT, OUTPUT, "", last)]
        owner = {"input": 0, OUTPUT: len(self.items) - 1}
        for i, node in enumerate(self.items[1:-1], 1):
            owner.update((row.name, i) for row in node.rows)
        self.arcs = [(edge, owner[edge[0]], owner[edge[1]]) for edge in edges(report) if owner[edge[0]] != owner[edge[1]]]
        self.names = Names([d for node in self.items for d in node.shape])
        self.preds: dict[int, list[int]] = defaultdict(list)
        self.succs: dict[int, list[int]] = defaultdict(list)
        for _, s, t in self.arcs:
            self.preds[t].append(s)
            self.succs[s].append(t)
        self.sources = [i for i in range(1, len(self.items)) if not self.preds[i]]  # boxes that read nothing drawn
        self.column = self._columns()
        self.lane = self._lanes()
        self.ncol = max(self.column.values()) + 1
        self.by_column: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.items)):
            self.by_column[self.column[i]].append(i)
        self.boxes = self._boxes()
        self.stacks = [self._stack(box.node) for box in self.boxes]  # per box: (text, size, weight, colour) lines
        self.label_width = [max(measure.width(t, s, w) for t, s, w, _ in lines) for lines in self.stacks]
        self.label_height = [sum(measure.height(s) for _, s, _, _ in lines) for lines in self.stacks]
        self.boxes[-1].h = self.label_height[-1]  # the output's label stands beside the arrow's head, centred on it
        self.colw, self.gapw = self._widths()

    def _columns(self) -> dict[int, int]:
        """A box's column: one right of the furthest box it reads; a box that reads nothing drawn (a learned tensor)
        stands just before its first reader."""
        preds, sources, count = self.preds, self.sources, len(self.items)
        column = {0: 0}
        for i in range(1, count):
            if i not in sources:
                column[i] = max((column[p] + 1 for p in preds[i] if p not in sources), default=1)
        for i in sorted(sources, reverse=True):
            column[i] = max(0, min((column[s] for s in self.succs[i]), default=column.get(i - 1, 0) + 1) - 1)
        for i in range(1, count):  # a reader of a source alone: after it
            column[i] = max([column[i], *(column[p] + 1 for p in preds[i])])
        return column

    def _lanes(self) -> dict[int, int]:
        """The main line (lane 0): the longest path back from the output, the first input at a tie; every other box in
        a lane below it at its column (-1, -2, ...), the lane of a box it reads where that one is free."""
        column, preds, count = self.column, self.preds, len(self.items)
        lane = {}
        i = count - 1
        while True:
            lane[i] = 0
            before = [p for p in preds[i] if column[p] == column[i] - 1]
            if not before:
                break
            i = next((p for p in before if p not in self.sources), before[0])
        taken = {(column[i], 0) for i in lane}
        for i in range(count):
            if i in lane:
                continue
            chain = [lane[p] for p in preds[i] if p in lane and lane[p] < 0 and (column[i], lane[p]) not in taken]
            lane[i] = chain[0] if chain else next(k for k in range(-1, -count - 2, -1) if (column[i], k) not in taken)
            taken.add((column[i], lane[i]))
        return lane

    def _boxes(self) -> list[Box]:
        """A box per item, sized by its shape: a vector a bar as high as its size (on a log scale), a map as wide as its
        channels, as high as its height and as deep as its width (powers of them); the output's marker has no size."""
        shapes = [node.shape for node in self.items]
        spatial = max([float(d) for s in shapes for d in s[1:] if num.is_concrete(d)] or [1])
        channels = max([float(s[0]) for s in shapes if len(s) > 1 and num.is_concrete(s[0])] or [1])
        flat = max([float(s[0]) for s in shapes if len(s) == 1 and num.is_concrete(s[0])] or [1])
        boxes = [Box(node, self.column[i], self.lane[i]) for i, node in enumerate(self.items)]
        for box in boxes:
            node = box.node
            if node.kind == OUTPUT:
                box.w, box.h, box.d = 0.0, 0.0, 0.0
            elif len(node.shape) == 1:
                box.w, box.h, box.d = 0.18, _size(node.shape[0], 0.6, 4.2, flat), 0.18
            else:
                box.h = _size(node.shape[1], 0.35, 4.2, spatial, 0.6)
                box.d = _size(node.shape[-1], 0.25, 2.2, spatial, 0.6) if len(node.shape) > 2 else 0.3
                box.w = _size(node.shape[0], 0.1, 1.2, channels, 0.6)
        return boxes

    def _stack(self, node: Node) -> list[tuple[str, float, str, str]]:
        """A box's label, line by line: its name, its shape and its hyperparameters, each wrapped to LABEL_WIDTH."""
        measure, names = self.measure, self.names
        lines = [(line, NAME, "bold", "#000000") for line in measure.wrap(node.name, LABEL_WIDTH, NAME, "bold", (".", "_"))]
        lines += [(line, SHAPE, "normal", "#1f4e79") for line in measure.wrap(names.shape(node.shape), LABEL_WIDTH, SHAPE, seps=("×", " "))]
        if node.label:
            lines += [(line, TEXT, "normal", "#333333") for line in measure.wrap(names.text(node.label), LABEL_WIDTH, TEXT)]
        return lines

    def _widths(self) -> tuple[list[float], list[float]]:
        """Each column as wide as its widest box or label; each gap (after its column) wide enough for a slot per line
        leaving the column or entering the next; the last gap narrow."""
        colw = [0.0] * self.ncol
        for i, box in enumerate(self.boxes):
            wide = self.label_width[i] + 0.12 if box.node.kind == OUTPUT else max(box.w + box.d / 2, self.label_width[i]) + 0.2
            colw[box.column] = max(colw[box.column], wide)
        degree = Counter()
        for _, s, t in self.arcs:
            degree[self.column[s]] += 1  # a slot in the gap after the source's column
            degree[self.column[t] - 1] += 1  # and in the gap before the target's
        gapw = [max(MIN_GAP, 2 * PAD + SLOT * degree[c]) for c in range(self.ncol)]
        gapw[-1] = 0.1
        return colw, gapw


class _Placement:
    """A _Grid placed with `reserve` units of left margin: its columns cut into rows, a route per arc, the sides of the
    faces each leaves and enters by, the tracks, the heights, where each box and label stands, the ports, the slots
    and the arrows' points (`drawing`, a method per step). `y` goes down the picture as it is laid out."""

    def __init__(self, grid: _Grid, reserve: float) -> None:
        self.grid, self.reserve = grid, reserve
        self.measure = grid.measure
        self.arcs, self.boxes, self.column, self.lane = grid.arcs, grid.boxes, grid.column, grid.lane
        self.labels: list[Label] = []
        self.y = -0.25

    def drawing(self) -> Drawing:
        """Rows, routes, tracks, heights and the points of every line; _Margin if the left margin is too narrow."""
        self.bands, self.band = self._bands()
        self.route = self._routes()
        self.sides = self._sides()
        self.faces = self._faces()
        self.x_of_column, self.x_of_gap = self._xs()
        self.channels = self._channels()
        self._title()
        self.track_y, self.centre, self.labels_top = self._heights()
        self._place_boxes()
        self.port, self.order = self._ports()
        slot_out, slot_in, slot_z, leading = self._gap_slots()
        slot_down = self._down_slots(leading)
        arrows = self._arrows(slot_out, slot_in, slot_z, slot_down)
        self._legend()
        return Drawing(self.boxes, arrows, self.labels, self.width, -self.y + 0.2, len(self.bands))

    def _bands(self) -> tuple[list[range], dict[int, int]]:
        """Rows: all columns on one if they fit, else the fewest rows that fit, of about even widths (_rows); and
        each column's row."""
        colw, gapw = self.grid.colw, self.grid.gapw
        crossing: list[Counter] = [Counter() for _ in range(self.grid.ncol)]
        for _, s, t in self.arcs:
            for c in range(self.column[s], self.column[t]):
                crossing[c][s] += 1
        most = MAX_WIDTH / UNIT - self.reserve - 0.3
        fewest = len(_rows(colw, gapw, crossing, most))
        budget = (sum(colw) + sum(gapw)) / fewest
        while budget < most and len(_rows(colw, gapw, crossing, budget)) > fewest:
            budget *= 1.04  # rows of about even widths: the fewest rows, each as narrow as that allows
        bands = _rows(colw, gapw, crossing, min(budget, most))
        return bands, {c: b for b, cols in enumerate(bands) for c in cols}

    def _routes(self) -> list[tuple[str, list]]:
        """Per arc (kind, channels): straight, Z (one vertical in the gap between neighbouring columns), by a channel's
        track (the channel above a lane, 'T' for lane 0, or 'IB': below a row, where arrows go on to the next rows)."""
        column, lane, band = self.column, self.lane, self.band
        route = []
        used_straight = set()
        z_lanes: dict[int, set[tuple[str, int]]] = defaultdict(set)  # per gap, the lanes Z lines leave and enter
        for _, s, t in self.arcs:
            cs, ct, a, b = column[s], column[t], lane[s], lane[t]
            if band[cs] != band[ct]:
                hops = [(band[cs], "IB")] + ([(band[ct] - 1, "IB")] if band[ct] > band[cs] + 1 else [])
                route.append(("wrap", hops))
            elif ct == cs + 1 and a == b and (s, t) not in used_straight:
                used_straight.add((s, t))
                route.append(("straight", []))
            elif ct == cs + 1 and ("in", a) not in z_lanes[cs] and ("out", b) not in z_lanes[cs]:
                # one vertical between the faces; its stubs cross the gap, so no other Z line may enter the lane
                # it leaves or leave the lane it enters (their stubs could lie on one height): those take a channel
                z_lanes[cs] |= {("out", a), ("in", b)}
                route.append(("z", []))
            else:
                route.append(("channel", [(band[cs], min(a, b))]))
        return route

    def _sides(self) -> list[tuple[str, str]]:
        """Which side of a face (up, down or the centre) each arc leaves and enters by."""
        sides = []
        for (_, s, t), (kind, hops) in zip(self.arcs, self.route):
            a, b = self.lane[s], self.lane[t]
            if kind == "straight":
                sides.append(("centre", "centre"))
            elif kind == "z":
                sides.append(("up" if b >= a else "down", "up" if a >= b else "down"))
            elif kind == "wrap":
                sides.append(("down", "up"))
            else:
                k = hops[0][1]
                sides.append(("up" if k == a else "down", "up" if k == b else "down"))
        return sides

    def _faces(self) -> dict[tuple[int, str], list[int]]:
        """The arcs on each face, (box, 'out'|'in') -> arcs; a box grows to hold the ports of its busiest side."""
        faces: dict[tuple[int, str], list[int]] = defaultdict(list)
        for n, (_, s, t) in enumerate(self.arcs):
            faces[(s, "out")].append(n)
            faces[(t, "in")].append(n)
        for i, box in enumerate(self.boxes):
            most = max([Counter(self.sides[n][0 if face == "out" else 1] for n in faces[(i, face)]).get(side, 0)
                        for face in ("out", "in") for side in ("up", "down")] + [0])
            if box.node.kind != OUTPUT:
                box.h = max(box.h, 2 * PORT * (most + 1))
        return faces

    def _xs(self) -> tuple[dict[int, float], dict[int, float]]:
        """Where each column begins, and the gap after it (its left edge), row by row from the left margin."""
        colw, gapw = self.grid.colw, self.grid.gapw
        x_of_column: dict[int, float] = {}
        x_of_gap: dict[int, float] = {}
        for cols in self.bands:
            x = self.reserve
            for c in cols:
                x_of_column[c] = x
                x_of_gap[c] = x + colw[c]
                x += colw[c] + gapw[c]
        return x_of_column, x_of_gap

    def _channels(self) -> dict[tuple, list[tuple[float, int, int]]]:
        """Tracks: each arc's horizontal runs on a track of its own in its channel, channel -> (span, arc, hop), the
        shortest first (nearest the boxes)."""
        column, x_of_column, x_of_gap = self.column, self.x_of_column, self.x_of_gap
        channels: dict[tuple, list[tuple[float, int, int]]] = defaultdict(list)
        for n, ((_, s, t), (kind, hops)) in enumerate(zip(self.arcs, self.route)):
            for h, hop in enumerate(hops):
                if kind == "wrap":
                    left = x_of_gap[column[s]] if h == 0 else 0.0
                    right = x_of_column[column[t]] if h == len(hops) - 1 else 0.0
                    span = abs(right - left) if len(hops) == 1 else (left if h == 0 else right)
                else:
                    span = x_of_column[column[t]] - x_of_gap[column[s]]
                channels[hop].append((span, n, h))
        for hop in channels:
            channels[hop].sort()
        return channels

    def _title(self) -> None:
        """The picture's width (its content's, or its title's, MAX_WIDTH at most) and the title, wrapped to it."""
        grid, measure = self.grid, self.measure
        report, names = grid.report, grid.names
        title = f"{report.model}: input {names.shape(report.input)}, {names.total(report.totals['params'])} parameters"
        content = self.reserve + max(sum(grid.colw[c] + grid.gapw[c] for c in cols) for cols in self.bands) + 0.3
        self.width = min(max(content, measure.width(title, TITLE, "bold") + 0.6), MAX_WIDTH / UNIT)
        for line in measure.wrap(title, self.width - 0.6, TITLE, "bold", (", ", " ")):
            self.labels.append(_label(measure, line, self.width / 2, self.y, TITLE, "bold", "#000000"))
            self.y -= measure.height(TITLE)
        self.y -= 0.1

    def _heights(self) -> tuple[dict[tuple[int, int], float], dict[int, float], dict[tuple[int, int], float]]:
        """Heights, row by row from the top: per row, the channel above each lane, the lane's boxes, their labels; the
        channel below the row. Returns each track's y ((arc, hop) -> y), each box's centre, each lane's labels' top."""
        boxes = self.boxes
        track_y: dict[tuple[int, int], float] = {}
        centre: dict[int, float] = {}
        labels_top: dict[tuple[int, int], float] = {}
        for b, cols in enumerate(self.bands):
            members = [i for c in cols for i in self.grid.by_column[c]]
            for k in sorted({self.lane[i] for i in members}, reverse=True):
                self.y = _channel(self.channels.get((b, k), []), self.y, track_y)
                inlane = [i for i in members if self.lane[i] == k]
                up = max(boxes[i].h / 2 + boxes[i].d / 2 for i in inlane)
                down = max(boxes[i].h / 2 for i in inlane)
                for i in inlane:
                    centre[i] = self.y - up
                self.y -= up + down + 0.12
                labels_top[(b, k)] = self.y
                self.y -= max([self.grid.label_height[i] for i in inlane if boxes[i].node.kind != OUTPUT] + [0]) + 0.1
            self.y = _channel(self.channels.get((b, "IB"), []), self.y, track_y) - (0.15 if b + 1 < len(self.bands) else 0)
        return track_y, centre, labels_top

    def _place_boxes(self) -> None:
        """Each box centred in its column at its lane's height, its label under it; the output's label beside the
        arrow's head."""
        grid, measure, centre = self.grid, self.measure, self.centre
        for i, box in enumerate(self.boxes):
            c = box.column
            if box.node.kind == OUTPUT:
                box.x0 = self.x_of_column[c]
                box.y0 = centre[i] - box.h / 2
                top = centre[i] + grid.label_height[i] / 2
                for text, size, weight, colour in grid.stacks[i]:
                    self.labels.append(_label(measure, text, box.x0 + 0.12, top, size, weight, colour, "left"))
                    top -= measure.height(size)
                continue
            box.x0 = self.x_of_column[c] + (grid.colw[c] - box.w - box.d / 2) / 2
            box.y0 = centre[i] - box.h / 2
            top = self.labels_top[(self.band[c], box.lane)]
            for text, size, weight, colour in grid.stacks[i]:
                self.labels.append(_label(measure, text, self.x_of_column[c] + grid.colw[c] / 2, top, size, weight, colour))
                top -= measure.height(size)

    def _far_y(self, n: int, end: str) -> float:
        """Where the arc's vertical next to this end goes: its track, or the other box's centre."""
        kind, hops = self.route[n]
        if kind == "z":
            return self.centre[self.arcs[n][2 if end == "out" else 1]]
        return self.track_y[(n, 0 if end == "out" else len(hops) - 1)]

    def _ports(self) -> tuple[dict[tuple[int, str], float], dict[tuple[int, str], int]]:
        """Ports: on each face, the arcs by side, ordered so that lines from one face do not cross. Returns each port's
        y ((arc, 'out'|'in') -> y) and its nearness to the face, per side (0 nearest)."""
        port: dict[tuple[int, str], float] = {}
        order: dict[tuple[int, str], int] = {}
        for (i, face), ns in self.faces.items():
            box, centre = self.boxes[i], self.centre[i]
            which = 0 if face == "out" else 1
            straight = any(self.sides[n][which] == "centre" for n in ns)
            if not straight and len(ns) == 1:
                port[(ns[0], face)] = centre
                order[(ns[0], face)] = 0
                continue
            for side in ("up", "down"):
                these = sorted((n for n in ns if self.sides[n][which] == side), key=lambda n: self._far_y(n, face),
                               reverse=side == "up")
                step = box.h / 2 / (len(these) + 1)
                for rank, n in enumerate(these):  # the highest line (up) or the lowest (down) nearest the box
                    port[(n, face)] = centre + (1 if side == "up" else -1) * step * (len(these) - rank)
                    order[(n, face)] = rank
            for n in ns:
                if self.sides[n][which] == "centre":
                    port[(n, face)] = centre
        return port, order

    def _gap_lines(self) -> tuple[dict[int, list], dict[int, list], dict[int, list]]:
        """The vertical lines in each gap, with the keys that order them: those leaving the column (the lowest lane
        first), the Z lines, those entering the next column (the top lane first)."""
        left: dict[int, list] = defaultdict(list)
        middle: dict[int, list] = defaultdict(list)
        right: dict[int, list] = defaultdict(list)
        for n, ((_, s, t), (kind, _)) in enumerate(zip(self.arcs, self.route)):
            if kind == "straight":
                continue
            if kind == "z":
                middle[self.column[s]].append(((self.lane[s], self.lane[t]), n))
                continue
            left[self.column[s]].append(((self.lane[s], self.sides[n][0] != "up", self.order[(n, "out")]), n))
            right[self.column[t] - 1].append(((-self.lane[t], self.sides[n][1] != "up", self.order[(n, "in")]), n))
        return left, middle, right

    def _gap_slots(self) -> tuple[dict[int, float], dict[int, float], dict[int, float], int]:
        """Slots: each vertical line in a gap at its own x, the lines leaving the column on the left, the Z lines in the
        middle, the lines entering the next column on the right; lines entering a row's first column in the left
        margin. Returns the x of each line out, in and Z, by arc, and the most lines entering one row's first column."""
        left, middle, right = self._gap_lines()
        slot_out: dict[int, float] = {}
        slot_in: dict[int, float] = {}
        slot_z: dict[int, float] = {}
        leading, ncol = 0, self.grid.ncol
        for c in range(ncol):
            if c in self.x_of_gap:
                x0 = self.x_of_gap[c] + PAD
                for rank, (_, n) in enumerate(sorted(left[c])):
                    slot_out[n] = x0 + rank * SLOT
                for rank, (_, n) in enumerate(sorted(middle[c])):
                    slot_z[n] = x0 + (len(left[c]) + rank) * SLOT
            first = c + 1 < ncol and self.band.get(c + 1) != self.band.get(c)  # c + 1 begins a row: its gap is the margin
            x1 = (self.reserve if first else self.x_of_column.get(c + 1, 0.0)) - PAD
            for rank, (_, n) in enumerate(sorted(right[c])):
                slot_in[n] = x1 - rank * SLOT
            if first:
                leading = max(leading, len(right[c]))
        return slot_out, slot_in, slot_z, leading

    def _down_slots(self, leading: int) -> dict[int, float]:
        """The x of each line going down past rows, in the left margin (the highest track nearest the edge); _Margin if
        the margin cannot hold them beside the `leading` lines entering a row's first column."""
        down = sorted((n for n, (kind, hops) in enumerate(self.route) if kind == "wrap" and len(hops) > 1),
                      key=lambda n: self.track_y[(n, 0)])
        slot_down = {n: PAD + rank * SLOT for rank, n in enumerate(down)}
        if self.reserve - PAD - leading * SLOT < PAD + len(down) * SLOT - 1e-9 and len(self.bands) > 1:
            raise _Margin(2 * PAD + (leading + len(down)) * SLOT + 0.05, leading + len(down))
        return slot_down

    def _arrows(self, slot_out: dict, slot_in: dict, slot_z: dict, slot_down: dict) -> list[Arrow]:
        """The arrows' points: from the source's port, along its slots and tracks, to the target's port."""
        arrows = []
        boxes, port, track_y = self.boxes, self.port, self.track_y
        for n, ((edge, s, t), (kind, hops)) in enumerate(zip(self.arcs, self.route)):
            start = boxes[s].bounds[2] + CLEAR if boxes[s].node.kind != OUTPUT else boxes[s].x0
            end = boxes[t].x0 - CLEAR
            ys, yt = port[(n, "out")], port[(n, "in")]
            if kind == "straight":
                points = [(start, ys), (end, yt)]
            elif kind == "z":
                points = [(start, ys), (slot_z[n], ys), (slot_z[n], yt), (end, yt)]
            elif len(hops) == 1:
                ty = track_y[(n, 0)]
                points = [(start, ys), (slot_out[n], ys), (slot_out[n], ty), (slot_in[n], ty), (slot_in[n], yt), (end, yt)]
            else:
                t0, t1 = track_y[(n, 0)], track_y[(n, 1)]
                points = [(start, ys), (slot_out[n], ys), (slot_out[n], t0), (slot_down[n], t0), (slot_down[n], t1),
                          (slot_in[n], t1), (slot_in[n], yt), (end, yt)]
            arrows.append(Arrow(edge, s, t, _clean(points), kind == "straight"))
        return arrows

    def _legend(self) -> None:
        """The names of long sizes, under the picture."""
        measure, legend = self.measure, self.grid.names.legend
        if legend:
            self.y -= 0.2
            for name, formula in legend:
                for line in measure.wrap(f"{name} = {formula}", self.width - 0.6, LEGEND, seps=(" + ", " ")):
                    self.labels.append(_label(measure, line, 0.3, self.y, LEGEND, "normal", "#333333", "left"))
                    self.y -= measure.height(LEGEND)


def _rows(colw: list[float], gapw: list[float], crossing: list[Counter], budget: float) -> list[range]:
    """Columns in rows of at most `budget` units: a row ends where the arcs of fewest boxes cross (one box:
    its lines go on to the next row together), then where fewest arcs cross, then as late as can be, once it
    is 60% full; the output never stands alone."""
    ncol, bands, start = len(colw), [], 0
    while start < ncol:
        fits, width = [], 0.0
        for c in range(start, ncol):
            width += colw[c] + gapw[c]
            if width > budget and c > start:
                break
            fits.append((c, width))
        if fits[-1][0] == ncol - 1:
            bands.append(range(start, ncol))
            break
        near = [c for c, w in fits if w >= 0.6 * budget and c < ncol - 2] or [fits[-1][0]]
        cut = min(near, key=lambda c: (len(crossing[c]), sum(crossing[c].values()), -c))
        bands.append(range(start, cut + 1))
        start = cut + 1
    return bands


def _channel(arcs: list[tuple[float, int, int]], y: float, track_y: dict) -> float:
    """Lay a channel's tracks from y down, the first (shortest) lowest; returns the y below it."""
    height = 2 * PAD + TRACK * max(len(arcs) - 1, 0) if arcs else 0.3
    for rank, (_, n, h) in enumerate(arcs):
        track_y[(n, h)] = y - height + PAD + rank * TRACK
    return y - height


def _clean(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The polyline without repeated points and without a point in the middle of a straight run."""
    out: list[tuple[float, float]] = []
    for p in points:
        if out and math.isclose(p[0], out[-1][0]) and math.isclose(p[1], out[-1][1]):
            continue
        if len(out) >= 2 and ((math.isclose(out[-2][0], out[-1][0]) and math.isclose(out[-1][0], p[0]))
                              or (math.isclose(out[-2][1], out[-1][1]) and math.isclose(out[-1][1], p[1]))):
            out[-1] = p
            continue
        out.append(p)
    return out


def _label(measure: Measure, text: str, x: float, top: float, size: float, weight: str, colour: str, ha: str = "center") -> Label:
    w, h = measure.width(text, size, weight), measure.height(size)
    x0 = x - w / 2 if ha == "center" else x
    return Label(text, x, top, size, (x0, top - h, x0 + w, top), weight, colour, ha)


# Rendering ------------------------------------------------------------------------------------------------

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
        from matplotlib.path import Path as Line
    except ImportError:
        raise ArchcalcError("archcalc draw needs matplotlib, an optional extra\n"
                            "  hint: pip install matplotlib (from archcalc's checkout: pip install '.[draw]')") from None
    picture = layout(report, depth)
    fig = Figure(figsize=picture.inches)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, picture.width)
    ax.set_ylim(-picture.height, 0)
    ax.axis("off")
    for box in picture.boxes:
        if box.node.kind == OUTPUT:
            continue
        x0, y0, w, h, dx = box.x0, box.y0, box.w, box.h, box.d / 2
        faces = [
            [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)],  # front
            [(x0, y0 + h), (x0 + w, y0 + h), (x0 + w + dx, y0 + h + dx), (x0 + dx, y0 + h + dx)],  # top
            [(x0 + w, y0), (x0 + w + dx, y0 + dx), (x0 + w + dx, y0 + h + dx), (x0 + w, y0 + h)],  # side
        ]
        for face, shade in zip(faces, (1.0, 0.85, 0.7)):
            ax.add_patch(Polygon(face, closed=True, facecolor=_shade(box.node.colour, shade), edgecolor="#444444", linewidth=0.7))
    for arrow in picture.arrows:
        colour = "#555555" if arrow.straight else "#7f3f98"
        ax.add_patch(FancyArrowPatch(path=Line(arrow.points), arrowstyle="-|>", mutation_scale=9, color=colour,
                                     linewidth=1.0, shrinkA=0, shrinkB=0, joinstyle="miter"))
    for label in picture.labels:
        ax.text(label.x, label.y, label.text, ha=label.ha, va="top", fontsize=label.size, weight=label.weight,
                color=label.colour, parse_math=False)
    try:
        # text stays text in an SVG (searchable, and smaller); the same spec gives the same file (no date, fixed ids)
        with rc_context({"svg.fonttype": "none", "svg.hashsalt": "archcalc"}):
            stamp = {".svg": {"Date": None}, ".pdf": {"CreationDate": None}}.get(suffix)
            fig.savefig(path, dpi=DPI, facecolor="white", metadata=stamp)
    except OSError as error:
        raise ArchcalcError(f"{path}: cannot write it: {error.strerror}") from None
    return path


def _shade(colour: str, factor: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{int(c * factor):02x}" for c in (r, g, b))
