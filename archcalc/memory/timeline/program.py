"""The interpreter of layer programs (archcalc/layers/events.py): a row's own ops, event by event, on the tape."""

from __future__ import annotations

from collections.abc import Callable

from ...core.dtypes import DType
from ...layers.events import CastWeight, Convert, Drop, Event, HandGradient, Hold, KeepInput, New, When
from .tape import Allocation, Tape


class Interpreter:
    """Runs a program's events on the tape, its names bound in `live`: allocations, references dropped.

    Tensors are of the kind `kind` but parameters' gradients ("grad.*", "gradients"). `x`: the row's input.
    `others`: a merging layer's other inputs ("x1", "x2"... by position), for KeepInput. `dead`: the storage
    Graph.forward's variable holds until the first op returns (released at the first New).
    `hand(allocation)`: a HandGradient, the input's gradient to its buffer. `held`: where Hold puts what the
    model's body holds. `cache`: autocast's cache, where CastWeight puts its copies. `bytes_of`: bytes of an
    element of each storage (layers.base.storage_bytes); a storage it does not name is a dtype's."""

    def __init__(self, tape: Tape, bytes_of: dict, kind: str, *, x: Allocation | None = None,
                 dead: Allocation | None = None, hand: Callable[[Allocation], None] | None = None,
                 held: list | None = None, cache: list | None = None, others: dict[str, Allocation] | None = None):
        self.tape, self.bytes_of, self.kind = tape, bytes_of, kind
        self.x, self.dead, self.hand, self.held, self.cache = x, dead, hand, held, cache
        self.others = others or {}
        self.live: dict[str, Allocation] = {}
        self.handlers: dict[type, Callable] = {New: self.new, Drop: self.drop, KeepInput: self.keep_input,
                                               Convert: self.convert, CastWeight: self.cast_weight, When: self.when,
                                               HandGradient: self.hand_gradient, Hold: self.hold}

    def run(self, events: tuple[Event, ...], live: dict[str, Allocation]) -> dict[str, Allocation]:
        """Run `events` with the names of `live` bound; return what is still alive, by name."""
        self.live = live
        for event in events:
            self.handlers[type(event)](event)
        return live

    def width(self, storage: str) -> int:
        """Bytes of an element of a storage: a Storage's name, or under autocast a dtype's."""
        return self.bytes_of[storage] if storage in self.bytes_of else DType(storage).bytes

    def new(self, e: New) -> None:
        tape, nbytes = self.tape, e.elements * self.width(e.storage)
        self.live[e.name] = tape.new(tape.size(0, nbytes) if e.per_sample else tape.size(nbytes, 0),
                                     "gradients" if e.name.startswith("grad.") else self.kind)
        tape.release(self.dead)
        self.dead = None

    def drop(self, e: Drop) -> None:
        for name in e.names:
            self.tape.release(self.live.pop(name))

    def keep_input(self, e: KeepInput) -> None:
        s = self.x if e.name == "x" else self.others[e.name]
        s.refs += 1
        self.live[e.name] = s

    def convert(self, e: Convert) -> None:
        source = self.live.get(e.source, self.x)
        if self.width(e.old) == self.width(e.new):
            source.refs += 1
            self.live[e.name] = source
        else:
            self.new(New(e.name, e.elements, e.new, e.per_sample))

    def cast_weight(self, e: CastWeight) -> None:
        copy = self.tape.new(self.tape.size(e.elements * DType(e.dtype).bytes, 0), "weight copies", refs=2, mark=False)
        self.live[e.name] = copy
        self.cache.append(copy)

    def when(self, e: When) -> None:
        if (self.bytes_of["model"] < self.bytes_of["opmath"]) == e.low:
            self.handlers[type(e.event)](e.event)

    def hand_gradient(self, e: HandGradient) -> None:
        self.hand(self.live[e.name])

    def hold(self, e: Hold) -> None:
        self.live[e.name].refs += 1
        self.held.append(self.live[e.name])

