"""What only the Quart shell has to get right (the rest is the contract suite's)."""

from __future__ import annotations

import socket

from eggpool.shells.quart_app import _bind


def test_the_listening_socket_says_it_is_tcp_so_replies_are_not_delayed() -> None:
    # asyncio disables Nagle (TCP_NODELAY) only on sockets whose proto is IPPROTO_TCP, and
    # accepted sockets inherit it from the listener. With proto 0, each keep-alive answer
    # whose head and body Hypercorn writes apart waited ~40 ms for a delayed ACK.
    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        client = socket.create_connection(sock.getsockname())
        accepted = None
        try:
            sock.setblocking(True)
            accepted, _ = sock.accept()
            assert accepted.proto == socket.IPPROTO_TCP
        finally:
            client.close()
            if accepted is not None:
                accepted.close()
    finally:
        sock.close()
