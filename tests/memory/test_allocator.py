"""The replay of PyTorch's CUDA caching allocator (archcalc/memory/allocator.py) against examples worked by hand
from the rules of c10/cuda/CUDACachingAllocator.cpp (round_size, get_allocation_size, get_free_block,
should_split, try_merge_blocks), and invariants on drawn sequences of mallocs and frees."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from archcalc.memory.allocator import Allocator, Block, OutOfMemory, replay, round_size, segment_size, trains

MiB = 2**20


def test_requests_round_up_to_512_bytes():
    assert [round_size(n) for n in (1, 511, 512, 513, 1025)] == [512, 512, 512, 1024, 1536]


def test_segments_by_request_size():
    # small pool: 2 MiB; large under 10 MiB: 20 MiB; from 10 MiB: rounded up to 2 MiB
    assert segment_size(512) == segment_size(MiB) == 2 * MiB
    assert segment_size(MiB + 512) == segment_size(10 * MiB - 512) == 20 * MiB
    assert segment_size(10 * MiB) == 10 * MiB
    assert segment_size(10 * MiB + 512) == segment_size(12 * MiB) == 12 * MiB


def test_small_pool_splits_down_to_512_bytes():
    a = Allocator()
    x, y = a.malloc(1000), a.malloc(1)
    assert (x.address, x.size, y.address, y.size) == (0, 1024, 1024, 512)
    assert (a.allocated, a.reserved) == (1536, 2 * MiB)
    z = a.malloc(MiB)  # 1 MiB: still the small pool
    v = a.malloc(MiB - 2048)  # 512 bytes would remain: split
    w = a.malloc(512)  # the last 512 bytes: exact
    assert [(b.address, b.size) for b in (z, v, w)] == [(1536, MiB), (MiB + 1536, MiB - 2048), (2 * MiB - 512, 512)]
    assert (a.allocated, a.reserved) == (2 * MiB, 2 * MiB)


def test_large_block_split_only_when_more_than_1_mib_remains():
    a = Allocator()
    x = a.malloc(10 * MiB + 512)  # a 12 MiB segment, 2 MiB - 512 remain: split
    assert (x.size, a.reserved) == (10 * MiB + 512, 12 * MiB)
    b = Allocator()
    y = b.malloc(11 * MiB)  # a 12 MiB segment, exactly 1 MiB remains (not more): handed out whole
    assert (y.size, b.allocated) == (12 * MiB, 12 * MiB)


def test_best_fit_smallest_block_then_lowest_address():
    a = Allocator()
    x1, s1, x2, s2 = a.malloc(3 * MiB), a.malloc(2 * MiB), a.malloc(5 * MiB), a.malloc(2 * MiB)  # one 20 MiB segment
    assert [b.address for b in (x1, s1, x2, s2)] == [0, 3 * MiB, 5 * MiB, 10 * MiB]
    a.free(x1)
    a.free(x2)  # free: 3 MiB at 0, 5 MiB at 5 MiB, 8 MiB at 12 MiB
    p = a.malloc(2 * MiB + MiB // 2)  # the 3 MiB block; 0.5 MiB would remain: whole
    q = a.malloc(4 * MiB)  # the 5 MiB block (not the 8): 1 MiB would remain: whole
    r = a.malloc(4 * MiB)  # the 8 MiB block: split
    assert [(b.address, b.size) for b in (p, q, r)] == [(0, 3 * MiB), (5 * MiB, 5 * MiB), (12 * MiB, 4 * MiB)]
    assert a.allocated == 2 * MiB + 2 * MiB + 3 * MiB + 5 * MiB + 4 * MiB

    b = Allocator()
    u, _, v, _ = b.malloc(3 * MiB), b.malloc(2 * MiB), b.malloc(3 * MiB), b.malloc(2 * MiB)
    b.free(v)
    b.free(u)  # two free 3 MiB blocks: the lower address first, whatever the order they were freed in
    assert b.malloc(3 * MiB).address == 0


def test_freed_blocks_merge_with_free_neighbours():
    a = Allocator()
    x, y, z = a.malloc(3 * MiB), a.malloc(3 * MiB), a.malloc(3 * MiB)
    a.free(x)
    a.free(z)  # z merges with the segment's free rest
    assert [(size, address) for size, address, _ in a.pools[False]] == [(3 * MiB, 0), (14 * MiB, 6 * MiB)]
    a.free(y)  # y merges with both: the segment is one free block again
    assert [(size, address) for size, address, _ in a.pools[False]] == [(20 * MiB, 0)]
    assert (a.allocated, a.reserved) == (0, 20 * MiB)


class _S:  # a timeline storage: bytes and kind
    def __init__(self, nbytes: int, kind: str = "activations"):
        self.size, self.kind = (nbytes, 0), kind


def test_replay_counts_whole_blocks_at_the_marks():
    # A (3 MiB) and B (1.5 MiB) in a new 20 MiB segment; A freed; C (2.5 MiB) is served by A's 3 MiB block
    # (the smallest that fits) whole: 0.5 MiB would remain. Backward's peak is B + 3 MiB, not B + C.
    A, B, C = _S(3 * MiB), _S(3 * MiB // 2), _S(5 * MiB // 2)
    events = [("phase", "forward"), ("+", A), ("+", B), ("mark", None), ("-", A),
              ("phase", "backward"), ("+", C), ("mark", None), ("-", B), ("-", C), ("phase", "optimizer"), ("mark", None)]
    assert replay(events) == {"forward": 9 * MiB // 2, "backward": 9 * MiB // 2, "optimizer": 0}


def test_replay_makes_lazy_state_in_the_first_step_and_frees_gradients_at_each_start():
    P, S, X, G = _S(2 * MiB, "parameters"), _S(2 * MiB, "optimizer state"), _S(3 * MiB // 2), _S(2 * MiB, "gradients")
    events = [("+", P), ("+", S), ("phase", "forward"), ("+", X), ("mark", None), ("phase", "backward"), ("+", G),
              ("-", X), ("mark", None), ("phase", "optimizer"), ("mark", None)]
    # third step: P, S, X in the forward (G freed by zero_grad); G back in backward; no slack anywhere
    assert replay(events) == {"forward": 11 * MiB // 2, "backward": 6 * MiB, "optimizer": 6 * MiB}
    assert replay(events, steps=1)["forward"] == 7 * MiB // 2  # the state appears in the first optimizer phase


def test_replay_of_small_requests_only_is_the_timeline():
    x = _S(4096)
    assert replay([("phase", "forward"), ("+", x), ("mark", None), ("-", x)]) is None


def _blocks(a: Allocator, live: list[Block]) -> list[Block]:
    heads = set()
    for b in [*live, *(entry[2] for pool in a.pools.values() for entry in pool)]:
        while b.prev is not None:
            b = b.prev
        heads.add(b)
    out = []
    for b in heads:
        while b is not None:
            out.append(b)
            b = b.next
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 24 * MiB), st.integers(0, 50)), max_size=60))
def test_invariants_on_drawn_sequences(ops):
    a = Allocator()
    live: list[tuple[Block, int]] = []
    for is_malloc, nbytes, pick in ops:
        if is_malloc or not live:
            live.append((a.malloc(nbytes), round_size(nbytes)))
        else:
            a.free(live.pop(pick % len(live))[0])
        assert a.allocated == sum(b.size for b, _ in live)
        for b, size in live:  # a small block is its request; a large one at most 1 MiB more
            assert b.size == size if size <= MiB else size <= b.size <= size + MiB
        blocks = _blocks(a, [b for b, _ in live])
        assert sum(b.size for b in blocks) == a.reserved  # the segments are tiled by their blocks
        for b in blocks:
            if b.next is not None:
                assert b.address + b.size == b.next.address
                assert b.allocated or b.next.allocated  # no two free neighbours: merged


# Under a cap (set_per_process_memory_fraction): alloc_block refuses a segment past the cap; release_cached_blocks
# frees the wholly free cached segments of both pools; alloc_block tries once more; then out of memory.

def test_a_segment_past_the_cap_is_refused():
    a = Allocator(cap=30 * MiB)
    a.malloc(20 * MiB)
    with pytest.raises(OutOfMemory) as refused:
        a.malloc(12 * MiB)  # 20 + 12 > 30, nothing cached to release
    assert (refused.value.size, refused.value.segment, refused.value.reserved) == (12 * MiB, 12 * MiB, 20 * MiB)
    a.malloc(10 * MiB)  # 20 + 10 = 30: at the cap is allowed
    assert a.reserved == a.most_reserved == 30 * MiB


def test_the_cached_segments_are_released_and_the_request_tried_again():
    a = Allocator(cap=40 * MiB)
    x, y = a.malloc(16 * MiB), a.malloc(2 * MiB)  # a 16 MiB segment, and 2 MiB split from a new 20 MiB one
    small = a.malloc(1000)  # the small pool's 2 MiB segment
    a.free(x)
    a.free(small)  # both segments wholly free now, cached; the 20 MiB one still holds y
    assert a.reserved == 38 * MiB
    z = a.malloc(20 * MiB)  # 38 + 20 > 40: the cached 16 and 2 MiB segments go back; 20 + 20 fit
    assert a.reserved == 40 * MiB and a.allocated == y.size + z.size and a.pools[True] == []
    assert [entry[0] for entry in a.pools[False]] == [18 * MiB]  # the split segment's free part stays (y is in it)
    with pytest.raises(OutOfMemory):
        a.malloc(19 * MiB)  # the 18 MiB free part cannot serve it, and it is not released (the segment is split)


def test_no_cap_no_refusal():
    a = Allocator()
    a.malloc(2**40)
    assert a.reserved == 2**40


def _step(*tensors):
    """A setup (a 10 MiB parameter), then one step: a phase making and freeing `tensors` (kind, MiB) in order."""
    param = _S(10 * MiB, "parameters")
    events = [("+", param), ("phase", "forward")]
    made = [_S(mib * MiB, kind) for kind, mib in tensors]
    for t in made:
        events.append(("+", t))
    for t in made:
        events.append(("-", t))
    return events


def test_trains_under_a_cap_and_says_where_it_fails():
    events = _step(("activations", 20), ("activations", 20))
    assert trains(events, 50 * MiB).ok
    refused = trains(events, 49 * MiB)
    assert not refused.ok
    f = refused.failure
    assert (f.step, f.phase, f.kind, f.size) == (1, "forward", "activations", 20 * MiB)
    assert trains(events, 50 * MiB).reserved == 50 * MiB


def test_cudnn_workspaces_do_not_stop_a_step():
    """A workspace made in a step is left out: torch takes a plan with a smaller one when the allocator refuses it."""
    events = _step(("activations", 20), ("workspace", 30))
    assert trains(events, 30 * MiB).ok and not trains(events, 30 * MiB, soft=()).ok


def test_the_warm_up_steps_count():
    """The optimizer's state, made in the first step's optimizer phase, takes a piece of the block the activation
    left cached: the second step's activation finds no block and no room (the segment is split, so it is not
    released). Two warm-up steps and one more, as the recordings ran them."""
    param, state, act = _S(10 * MiB, "parameters"), _S(10 * MiB, "optimizer state"), _S(15 * MiB)
    events = [("+", param), ("+", state), ("phase", "forward"), ("+", act), ("phase", "backward"), ("-", act),
              ("phase", "optimizer")]
    assert trains(events, 30 * MiB, steps=1).ok
    second = trains(events, 30 * MiB)
    assert (second.failure.step, second.failure.phase, second.failure.size) == (2, "forward", 15 * MiB)
    assert trains(events, 42 * MiB).ok  # 15 MiB take a segment of 16 (kRoundLarge): 26 + 16
