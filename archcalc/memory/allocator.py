"""A replay of PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp, native backend,
default settings: one stream, no max_split_size, no expandable segments, no garbage collection).

What `torch.cuda.memory_allocated()` counts is the size of the blocks handed out, not the bytes asked
for: a request is rounded up to 512 bytes (round_size), and a cached block larger than the request is
split only when enough would remain (should_split), otherwise the whole block is handed out. Rules:

- pools: requests of at most 1 MiB (kSmallSize) in the small pool, the others in the large pool;
- a request is served by the smallest free block of its pool that fits it, the lowest address among
  equal sizes (get_free_block: lower_bound in a set ordered by (stream, size, address));
- none fits: a new segment (alloc_block, cudaMalloc) of 2 MiB (small pool), 20 MiB (requests under
  10 MiB, kMinLargeAlloc) or the request rounded up to 2 MiB (get_allocation_size); here each new
  segment lies above every earlier one (addresses only order equal sizes);
- the block found (cached or new) is split, the request at its start, when the remainder is at
  least 512 bytes (small pool) or more than 1 MiB (large pool); else it is handed out whole;
- a freed block merges with its free neighbours of the same segment (try_merge_blocks); segments
  are never given back (no empty_cache), but under a cap (below);
- under a cap (torch.cuda.set_per_process_memory_fraction: allowed_memory_maximum, compared with the bytes
  reserved, never with the CUDA context): a new segment that would take the reserved bytes past the cap is
  refused (alloc_block); the allocator then frees every cached segment that is wholly free, in both pools
  (release_cached_blocks: a segment with a block still handed out stays, with its free parts), and tries
  once more; refused again, it is out of memory (release_available_cached_blocks does nothing with the
  default max_split_size; garbage collection is off by default).

>>> a = Allocator()
>>> x = a.malloc(1_210_368)                   # 1.15 MiB: large pool, a new 20 MiB segment, split
>>> a.allocated, a.reserved
(1210368, 20971520)
>>> a.free(x)                                 # merged back: one free block of 20 MiB
>>> y = a.malloc(19 * 2**20 + 512)            # fits in the cached 20 MiB; under 1 MiB would remain: whole
>>> a.allocated
20971520
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

BLOCK = 512  # kMinBlockSize: every request is rounded up to it
SMALL = 2**20  # kSmallSize: the largest request of the small pool
SMALL_SEGMENT = 2 * 2**20  # kSmallBuffer
LARGE_SEGMENT = 20 * 2**20  # kLargeBuffer: the segment of a large request under MIN_LARGE
MIN_LARGE = 10 * 2**20  # kMinLargeAlloc
ROUND_LARGE = 2 * 2**20  # kRoundLarge


class Block:
    __slots__ = ("address", "allocated", "next", "prev", "size", "small")

    def __init__(self, address: int, size: int, small: bool):
        self.address, self.size, self.small = address, size, small
        self.allocated = False
        self.prev: Block | None = None
        self.next: Block | None = None


def round_size(size: int) -> int:
    """round_size: at least 512 bytes, a multiple of 512."""
    return BLOCK if size < BLOCK else -(-size // BLOCK) * BLOCK


def segment_size(size: int) -> int:
    """get_allocation_size: the cudaMalloc made for a (rounded) request no cached block fits."""
    if size <= SMALL:
        return SMALL_SEGMENT
    if size < MIN_LARGE:
        return LARGE_SEGMENT
    return -(-size // ROUND_LARGE) * ROUND_LARGE


def should_split(block: Block, size: int) -> bool:
    remaining = block.size - size
    return remaining >= BLOCK if block.small else remaining > SMALL


class OutOfMemory(Exception):
    """A request that no cached block fits and the cap refuses a segment for, even after the cached segments are freed."""

    def __init__(self, size: int, segment: int, allocated: int, reserved: int):
        super().__init__(f"{size} bytes (a segment of {segment}): {allocated} allocated, {reserved} reserved")
        self.size, self.segment, self.allocated, self.reserved = size, segment, allocated, reserved


class Allocator:
    """The caching allocator's state: free blocks per pool (sorted by size, then address), the bytes
    handed out (`allocated`, what memory_allocated() reads) and cudaMalloc'ed (`reserved`), under `cap`
    reserved bytes if given (set_per_process_memory_fraction's allowed_memory_maximum).

    >>> a = Allocator(cap=40 * 2**20)
    >>> x = a.malloc(30 * 2**20); a.free(x)      # a 30 MiB segment, cached when freed
    >>> y = a.malloc(8 * 2**20)                  # 8 MiB from it: split (22 MiB remain)
    >>> z = a.malloc(24 * 2**20)                 # no block fits; 30 + 24 MiB > 40: the cached segment is split, so it stays
    Traceback (most recent call last):
    ...
    archcalc.memory.allocator.OutOfMemory: 25165824 bytes (a segment of 25165824): 8388608 allocated, 31457280 reserved
    >>> a.free(y); z = a.malloc(32 * 2**20)     # the 30 MiB segment, wholly free again, is released: 32 MiB fit
    >>> a.reserved
    33554432
    """

    def __init__(self, cap: int | None = None):
        self.pools: dict[bool, list] = {True: [], False: []}  # small? -> sorted (size, address, block) of free blocks
        self.allocated = 0
        self.reserved = 0
        self.top = 0  # the next segment's address
        self.cap = cap
        self.most_reserved = 0  # the highest `reserved` so far

    def malloc(self, nbytes: int) -> Block:
        size = round_size(nbytes)
        small = size <= SMALL
        pool = self.pools[small]
        i = bisect_left(pool, (size, -1))
        if i < len(pool):
            block = pool.pop(i)[2]
        else:
            segment = segment_size(size)
            if self.cap is not None and self.reserved + segment > self.cap:
                self.release_cached()  # release_cached_blocks, then alloc_block once more
                if self.reserved + segment > self.cap:
                    raise OutOfMemory(size, segment, self.allocated, self.reserved)
            block = Block(self.top, segment, small)
            self.top += block.size
            self.reserved += block.size
            self.most_reserved = max(self.most_reserved, self.reserved)
        if should_split(block, size):
            rest = Block(block.address + size, block.size - size, small)
            rest.prev, rest.next = block, block.next
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            insort(pool, (rest.size, rest.address, rest))
        block.allocated = True
        self.allocated += block.size
        return block

    def free(self, block: Block) -> None:
        block.allocated = False
        self.allocated -= block.size
        pool = self.pools[block.small]
        for other in (block.prev, block.next):
            if other is not None and not other.allocated:  # try_merge_blocks
                del pool[bisect_left(pool, (other.size, other.address))]
                if other is block.prev:
                    block.address, block.prev = other.address, other.prev
                    if other.prev is not None:
                        other.prev.next = block
                else:
                    block.next = other.next
                    if other.next is not None:
                        other.next.prev = block
                block.size += other.size
        insort(pool, (block.size, block.address, block))

    def release_cached(self) -> None:
        """release_cached_blocks: every free block that is a whole segment (not split) is given back (cudaFree)."""
        for pool in self.pools.values():
            kept = [entry for entry in pool if entry[2].prev is not None or entry[2].next is not None]
            self.reserved -= sum(entry[0] for entry in pool) - sum(entry[0] for entry in kept)
            pool[:] = kept


_taps: list[list] = []


@contextmanager
def tapped() -> Iterator[list]:
    """The event lists `replay` is handed meanwhile, in order (the timeline hands it a step's events at a concrete
    batch on CUDA: archcalc/memory/budget.py replays them again under a cap)."""
    seen: list = []
    _taps.append(seen)
    try:
        yield seen
    finally:
        _taps.remove(seen)


def replay(events: list, steps: int = 3, lazy: tuple = ("optimizer state",), cleared: tuple = ("gradients",)) -> dict | None:
    """Each phase's peak of `memory_allocated()` in the last of `steps` training steps, the allocator fed with a
    timeline's events (archcalc/memory/timeline/tape.py, Tape.events: ("+", storage), ("-", storage), ("mark", None),
    ("phase", name); a storage has `.size[0]` bytes and a `.kind`). The events before the first phase run once
    (parameters, buffers, the batch), but those of a `lazy` kind, allocated by the first step's optimizer phase
    as torch.optim does it (its state, in the same order). At each step's start what the previous step left of
    a `cleared` kind is freed (zero_grad(set_to_none=True)), and what it left of another kind (a storage the
    timeline does not follow to its end) is freed just before. The peaks are read where the timeline marks
    them; the phase's start counts (reset_peak_memory_stats).

    A small-pool block is never larger than its (rounded) request: a segment of 2 MiB is split whenever 512
    bytes or more remain, and every request is a multiple of 512. So only the large pool is replayed block by
    block; the small pool's requests are only counted, and None says that no request reached the large pool
    (then the blocks are the requests: the peaks are the timeline's own)."""
    for seen in _taps:
        seen.append(events)
    if not any(op == "+" and s.size[0] > SMALL for op, s in events):
        return None
    run = _Replay(events, lazy, cleared)
    peaks: dict = {}
    for step in range(steps):
        peaks = run.step(step)
    return peaks


class _Replay:
    """`replay`'s state: the allocator (the large pool, block by block), the block of each storage alive (its rounded
    size in the small pool, only counted), the small pool's allocated bytes, the setup's storages."""

    def __init__(self, events: list, lazy: tuple, cleared: tuple):
        first = next(i for i, e in enumerate(events) if e[0] == "phase")
        self.allocator = Allocator()
        self.blocks: dict = {}  # storage -> its Block (large pool) or its rounded size (small pool), while allocated
        self.deferred: list = []  # the optimizer's state, made by the first step
        self.small = 0  # the small pool's allocated bytes
        self.cleared = cleared
        self._setup(events[:first], lazy)
        self.steady = self._steady(events[first:])

    def malloc(self, s) -> None:
        size = round_size(s.size[0]) if s.size[0] else 0  # an empty tensor takes no block
        if size > SMALL:
            self.blocks[s] = self.allocator.malloc(size)
        else:
            self.blocks[s] = size
            self.small += size

    def free(self, s) -> None:
        b = self.blocks.pop(s)
        if isinstance(b, Block):
            self.allocator.free(b)
        else:
            self.small -= b

    def _setup(self, before: list, lazy: tuple) -> None:
        """The events before the first phase, once; the optimizer's state deferred to the first step."""
        for op, s in before:
            if op == "+" and s.kind in lazy:
                self.deferred.append(s)
            elif op == "+":
                self.malloc(s)
            elif op == "-" and s in self.blocks:
                self.free(s)
        self.setup = set(self.blocks) | set(self.deferred)

    def _steady(self, events: list) -> list:
        """A step's events, where a small-pool storage made by the step is only a number of bytes, added and taken off."""
        steady = []
        for op, s in events:
            if op in "+-" and s not in self.setup and s.size[0] <= SMALL:
                steady.append(("bytes", round_size(s.size[0]) if op == "+" and s.size[0] else
                               -round_size(s.size[0]) if s.size[0] else 0))
            else:
                steady.append((op, s))
        return steady

    def step(self, index: int) -> dict:
        """One training step: each phase's peak of the bytes allocated."""
        for s in sorted((s for s in self.blocks if s not in self.setup), key=lambda s: s.kind in self.cleared):
            self.free(s)  # what the previous step left: stray ones first, then zero_grad's (gradients)
        self.small = sum(b for s, b in self.blocks.items() if not isinstance(b, Block))
        a = self.allocator
        peaks: dict = {}
        phase = None
        for op, s in self.steady:
            if op == "bytes":
                self.small += s
            elif op == "mark":
                now = a.allocated + self.small
                if now > peaks[phase]:
                    peaks[phase] = now
            elif op == "+":
                self.malloc(s)
            elif op == "-":
                if s in self.blocks:
                    self.free(s)
            else:
                phase = s
                if index == 0 and phase == "optimizer":
                    for d in self.deferred:
                        self.malloc(d)
                peaks[phase] = a.allocated + self.small
        return peaks


@dataclass(frozen=True)
class Failure:
    """Where a replay under a cap ran out of memory: the step (1, 2, 3; 0 before the first), its phase, the kind of the
    tensor asked for, the request and its segment, the bytes allocated and reserved then (the cached segments freed)."""

    step: int
    phase: str
    kind: str
    size: int
    segment: int
    allocated: int
    reserved: int


@dataclass(frozen=True)
class Trial:
    """A training run replayed under a cap: whether every step ran, the most bytes reserved (what the cap
    bounds) and allocated (the blocks handed out, cuDNN's workspaces left out: see `trains`) on the way."""

    cap: int
    reserved: int
    allocated: int
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def trains(events: list, cap: int, steps: int = 3, soft: tuple = ("workspace",), lazy: tuple = ("optimizer state",),
           cleared: tuple = ("gradients",)) -> Trial:
    """Run `steps` training steps of a timeline's events (as `replay` takes them: the setup once, the optimizer's
    state made by the first step's optimizer phase, what a step left freed at the next one's start) through the
    allocator under `cap` reserved bytes, both pools block by block, and say whether it runs out of memory
    (the recordings' method: two warm-up steps and the measured one, all under the cap).

    A tensor of a `soft` kind made within a step (cuDNN's workspace, made and freed inside one convolution) is
    left out: torch asks cuDNN for a plan whose workspace the allocator can give (an OutOfMemoryError on a
    workspace is caught and a plan with a smaller one taken: aten/src/ATen/native/cudnn/Conv_v8.cpp), so a
    workspace never stops a step, and one made and freed at once leaves the cached blocks as they were, merged
    back (or a new segment, wholly free, that the next refusal releases). Its size in the timeline is a share
    fitted to the recorded peaks, not the block cuDNN asks for under a cap. The cuBLAS workspaces, made before
    the step, stay."""
    run = _Run(events, cap, soft, lazy, cleared)
    try:
        run.setup()
        for step in range(steps):
            run.step(step)
    except OutOfMemory as refused:
        return run.trial(refused)
    return run.trial()


class _Run:
    """`trains`' state: the allocator, the block of each storage alive, where the run is."""

    def __init__(self, events: list, cap: int, soft: tuple, lazy: tuple, cleared: tuple):
        first = next(i for i, e in enumerate(events) if e[0] == "phase")
        self.before, self.events = events[:first], events[first:]
        self.soft, self.lazy, self.cleared = soft, lazy, cleared
        self.allocator = Allocator(cap)
        self.blocks: dict = {}  # storage -> its Block while allocated (None: an empty tensor, no block)
        self.deferred: list = []  # the optimizer's state, made by the first step
        self.setup_storages: set = set()
        self.most = 0  # the most bytes allocated
        self.where = (0, "before the first step", "")  # step, phase, the kind of the storage being made

    def malloc(self, s) -> None:
        self.where = (*self.where[:2], s.kind)
        self.blocks[s] = self.allocator.malloc(s.size[0]) if s.size[0] else None
        self.most = max(self.most, self.allocator.allocated)

    def free(self, s) -> None:
        block = self.blocks.pop(s, None)
        if block is not None:
            self.allocator.free(block)

    def setup(self) -> None:
        """Parameters, buffers, the cuBLAS workspaces, the batch: once."""
        for op, s in self.before:
            if op == "+" and s.kind in self.lazy:
                self.deferred.append(s)
            elif op == "+":
                self.malloc(s)
            elif op == "-":
                self.free(s)
        self.setup_storages = set(self.blocks) | set(self.deferred)

    def step(self, index: int) -> None:
        # what the previous step left: stray ones first, then zero_grad's (gradients)
        for s in sorted((s for s in self.blocks if s not in self.setup_storages), key=lambda s: s.kind in self.cleared):
            self.free(s)
        for op, s in self.events:
            if op == "+" and s.kind not in self.soft:
                self.malloc(s)
            elif op == "-":
                self.free(s)
            elif op == "phase":
                self.where = (index + 1, s, "")
                if index == 0 and s == "optimizer":
                    for d in self.deferred:
                        self.malloc(d)

    def trial(self, refused: OutOfMemory | None = None) -> Trial:
        a = self.allocator
        failure = None if refused is None else Failure(*self.where, refused.size, refused.segment, refused.allocated,
                                                       refused.reserved)
        return Trial(a.cap, a.most_reserved, self.most, failure)
