"""runtime/placement.py: weighted rendezvous hashing of far names onto nodes.

Spec (issue 12): each far object lives on R distinct nodes chosen by
rendezvous (highest-random-weight) hashing of its far name, weighted by each
node's memory limit, so adding or losing a node moves only its share; the
placement is a pure function of the node list and the name (STYLE 15).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runtime.placement import node_seed, place

NAMES = [b"key:%d" % i for i in range(30_000)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def nodes_of(*specs: tuple[str, float]) -> list[tuple[int, float]]:
    return [(node_seed(address), weight) for address, weight in specs]


A, B, C, D = (f"10.0.0.{i}:11311" for i in range(1, 5))


def test_stable_distinct_and_independent_of_node_order():
    nodes = nodes_of((A, 1.0), (B, 1.0), (C, 1.0))
    first = [place(n, nodes, 2) for n in NAMES]
    assert first == [place(n, nodes, 2) for n in NAMES]  # a pure function
    assert all(len(set(p)) == 2 for p in first)  # distinct nodes
    # the same nodes listed in another order: the same nodes for every name
    reordered = [nodes[2], nodes[0], nodes[1]]
    back = {0: 2, 1: 0, 2: 1}  # index in `reordered` -> index in `nodes`
    for n, p in zip(NAMES, first, strict=True):
        assert tuple(back[i] for i in place(n, reordered, 2)) == p
    # the same in every process: no Python hash() (randomized per process) in it
    code = (
        "from runtime.placement import node_seed, place;"
        f"nodes = [(node_seed(a), 1.0) for a in {[A, B, C]!r}];"
        "print([place(b'key:%d' % i, nodes, 2) for i in range(200)])"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=ROOT,
            timeout=60,
        ).stdout
        assert out.strip() == repr(first[:200])


def test_shares_follow_the_weights():
    nodes = nodes_of((A, 1.0), (B, 2.0), (C, 1.0))
    counts = [0, 0, 0]
    for n in NAMES:
        counts[place(n, nodes, 1)[0]] += 1
    shares = [c / len(NAMES) for c in counts]
    assert shares[0] == pytest.approx(0.25, abs=0.015)
    assert shares[1] == pytest.approx(0.50, abs=0.015)
    assert shares[2] == pytest.approx(0.25, abs=0.015)
    # equal weights: equal shares, for the first replica and for membership
    even = nodes_of((A, 64.0), (B, 64.0), (C, 64.0))
    member = [0, 0, 0]
    for n in NAMES:
        for i in place(n, even, 2):
            member[i] += 1
    assert all(abs(m / len(NAMES) - 2 / 3) < 0.015 for m in member)


@pytest.mark.parametrize("r", [1, 2])
def test_adding_a_node_moves_only_its_share(r):
    old_nodes = nodes_of((A, 1.0), (B, 1.0), (C, 1.0))
    new_nodes = old_nodes + nodes_of((D, 1.0))
    moved = 0
    for n in NAMES:
        old = place(n, old_nodes, r)
        new = place(n, new_nodes, r)
        if new == old:
            continue
        moved += 1
        # the new node joined the set; the others kept their order
        assert 3 in new
        assert [i for i in new if i != 3] == list(old[: r - 1])
    # the new node takes its weight's share of every replica slot, no more
    assert moved / len(NAMES) == pytest.approx(r * 0.25, abs=0.02)


@pytest.mark.parametrize("r", [1, 2])
def test_removing_a_node_moves_only_what_it_held(r):
    nodes = nodes_of((A, 1.0), (B, 2.0), (C, 1.0), (D, 1.0))
    without_b = [nodes[0], nodes[2], nodes[3]]
    index = {0: 0, 1: 2, 2: 3}  # index in without_b -> in nodes
    held = 0
    for n in NAMES:
        old = place(n, nodes, r)
        new = tuple(index[i] for i in place(n, without_b, r))
        if 1 not in old:
            assert new == old  # untouched by B's departure
            continue
        held += 1
        # B's place goes to the next node by score; the rest stay, in order
        assert [i for i in old if i != 1] == list(new[: r - 1])
        assert 1 not in new
    assert 0 < held < len(NAMES)


def test_bad_replica_counts_are_refused():
    nodes = nodes_of((A, 1.0), (B, 1.0))
    with pytest.raises(ValueError):
        place(b"k", nodes, 3)
    with pytest.raises(ValueError):
        place(b"k", nodes, 0)


def test_the_compiled_module_places_as_the_pure_python_source_does():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "placement_source", os.path.join(ROOT, "runtime", "placement.py")
    )
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)  # the .py itself, run by the interpreter
    nodes = nodes_of((A, 1.0), (B, 3.0), (C, 2.0), (D, 1.5))
    for n in NAMES[:3000]:
        assert place(n, nodes, 2) == source.place(n, nodes, 2)
    assert place(memoryview(b"key:1"), nodes, 3) == place(b"key:1", nodes, 3)
