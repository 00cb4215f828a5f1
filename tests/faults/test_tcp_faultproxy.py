"""The TCP fault proxy put between s3pod and redis-server: transparent by default, each fault does what it says."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis
from faultproxy import TcpFaultProxy


def raw(proxy: TcpFaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


def test_transparent_by_default(redis_server, redis_client) -> None:
    with TcpFaultProxy(redis_server.port) as proxy:
        client = redis.Redis.from_url(proxy.url)
        client.set("k", b"v" * 100_000)
        assert client.get("k") == b"v" * 100_000
        client.close()
        assert proxy.connections == 1


def test_latency_delays_every_reply(redis_server, redis_client) -> None:
    with TcpFaultProxy(redis_server.port) as proxy:
        proxy.latency_s = 0.2
        s = raw(proxy)
        began = time.monotonic()
        s.sendall(b"PING\r\n")
        assert s.recv(100) == b"+PONG\r\n"
        assert time.monotonic() - began >= 0.4, "0.2 s on the way there and 0.2 s back"
        s.close()


def test_reset_all_resets_open_connections(redis_server, redis_client) -> None:
    with TcpFaultProxy(redis_server.port) as proxy:
        s = raw(proxy)
        s.sendall(b"PING\r\n")
        assert s.recv(100) == b"+PONG\r\n"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            s.sendall(b"PING\r\n")
            s.recv(100)


def test_cut_after_n_bytes_delivers_n_then_resets(redis_server, redis_client) -> None:
    redis_client.set("big", b"x" * 10_000)
    with TcpFaultProxy(redis_server.port) as proxy:
        proxy.cut_after(5000, times=1)
        s = raw(proxy)
        s.sendall(b"GET big\r\n")
        got = b""
        with pytest.raises(ConnectionResetError):
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed")
                got += chunk
        # The request's 9 bytes count too: the reply is cut 4991 bytes in.
        assert len(got) == 5000 - len(b"GET big\r\n")
        s2 = raw(proxy)  # the cut fired its one time: the next connection is whole
        s2.sendall(b"GET big\r\n")
        data = b""
        while len(data) < 10_000 + 10:
            data += s2.recv(65536)
        assert data.startswith(b"$10000\r\n")
        assert proxy.resets == 1


def test_silence_holds_traffic_until_lifted(redis_server, redis_client) -> None:
    with TcpFaultProxy(redis_server.port) as proxy:
        s = raw(proxy)
        proxy.silence(True)
        s.sendall(b"PING\r\n")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
        threading.Timer(0.2, proxy.silence, args=(False,)).start()
        s.settimeout(5)
        assert s.recv(100) == b"+PONG\r\n"
