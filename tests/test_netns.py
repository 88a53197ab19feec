"""tests/netns.py, the partition harness: hosts are made, cut, healed and cleaned up.

Each test skips, saying why, without root or a working `ip netns`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import time

import netns
import pytest

from protocol.far import VERSION, FrameReader, Op, Status, encode_frame, encode_hello


def hello(address: str, port: int, timeout: float = 5.0) -> int:
    """Connect to a far node, send HELLO; the reply's status."""
    with socket.create_connection((address, port), timeout=timeout) as s:
        s.sendall(encode_frame(1, Op.HELLO, 0, encode_hello(VERSION, b"")))
        reader = FrameReader(replies=True)
        while True:
            frame = reader.next()
            if frame is not None:
                return frame.status
            data = s.recv(65536)
            assert data, "the node closed the connection"
            reader.feed(data)


def links() -> str:
    """This namespace's interfaces."""
    return netns.ip("-o link show")


def test_a_far_node_on_its_own_host_answers_over_the_veth(far_host):
    node = far_host.start_farserver()
    assert far_host.name in netns.ip("netns list")
    assert far_host.name.startswith(f"kvtest-{os.getpid()}-")
    assert ipaddress.ip_address(node.host) in far_host.subnet
    assert far_host.subnet.subnet_of(netns.POOL) and far_host.subnet.prefixlen == 30
    assert netns.ip(f"netns pids {far_host.name}").split() == [str(node.pid)]
    assert hello(node.host, node.port) == Status.OK
    with pytest.raises(OSError):  # it listens on its host's address only
        socket.create_connection(("127.0.0.1", node.port), timeout=1).close()


def test_cut_refuses_connections_at_once_and_heal_restores_them(far_host):
    node = far_host.start_farserver()
    far_host.cut()
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        socket.create_connection((node.host, node.port), timeout=5).close()
    assert info.value.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)  # never the default route
    assert time.monotonic() - t0 < 1.0
    far_host.heal()
    assert hello(node.host, node.port) == Status.OK
    assert node.alive()


def test_hosts_get_distinct_names_and_subnets(far_hosts):
    a, b = far_hosts(), far_hosts()
    assert a.name != b.name and a.host_if != b.host_if
    assert a.subnet != b.subnet
    assert all(len(name) <= 15 for name in (a.host_if, a.peer_if, b.host_if, b.peer_if))


def test_close_stops_the_node_and_deletes_namespace_veth_and_route():
    if netns.unavailable():
        pytest.skip(netns.unavailable())
    host = netns.FarHost()
    node = host.start_farserver()
    host.close()
    assert not node.alive()
    assert host.name not in netns.ip("netns list")
    assert host.host_if not in links()
    assert str(host.subnet) not in netns.ip("-4 route show")
    host.close()  # twice is harmless


def test_cleanup_deletes_the_leftovers_of_a_dead_pid_only():
    if netns.unavailable():
        pytest.skip(netns.unavailable())
    dead = 4194304 + 1  # above any pid_max: never a live process
    name = f"{netns.PREFIX}-{dead}-0"
    mine = netns.FarHost()  # alive: must survive
    try:
        netns.ip(f"netns add {name}")
        deleted = netns.cleanup_leftovers()
        assert name in deleted and mine.name not in deleted
        listed = netns.ip("netns list")
        assert name not in listed and mine.name in listed
        assert str(mine.subnet) in netns.ip("-4 route show")
    finally:
        netns.ip(f"netns del {name}", check=False)
        mine.close()
