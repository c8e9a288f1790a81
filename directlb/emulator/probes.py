"""One health probe of one target: a TCP connect, or an HTTP(S) request.

The prober runs one probe per target every IntervalTime (a thousand a second for 5,000 targets
at the default 5 s) on the event loop that also serves the API, so the common probe, a TCP
connect to an IP address, is driven by loop callbacks on a bare non-blocking socket: no task,
no stream, no transport. On loopback that takes about 65 µs of CPU, against 160 µs for
``asyncio.open_connection`` in a task (about half of it the kernel's handshake).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
from collections.abc import Callable

from directlb.emulator.store import Doc

#: ``done(ok, error)``: how a probe reports; ``error`` says why it failed ("" when ok).
ProbeDone = Callable[[bool, str], None]


def address_family(ip: str) -> int:
    """The socket family of an IP address, or 0 for anything else (a host name)."""
    try:
        version = ipaddress.ip_address(ip).version
    except ValueError:
        return 0
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def connect_error(code: int, address: tuple[str, int]) -> str:
    """A failed connect, worded as asyncio's ``sock_connect`` words it."""
    return str(OSError(code, f"Connect call failed {address}"))


class ConnectProbe:
    """A TCP connect to ``address`` within ``timeout`` wall seconds, driven by loop callbacks.

    :meth:`start` reports through ``done`` exactly once, later (from the loop) or, when the
    connect is decided at once, before it returns; :meth:`abort` ends it without a report.
    """

    def __init__(
        self, *, address: tuple[str, int], family: int, timeout: float, done: ProbeDone
    ) -> None:
        self.address = address
        self.family = family
        self.timeout = timeout
        self._done = done
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as error:  # out of file descriptors, say
            self._done(False, str(error) or type(error).__name__)
            return
        sock.setblocking(False)
        code = sock.connect_ex(self.address)
        if code in (errno.EINPROGRESS, errno.EAGAIN):
            self._sock = sock
            self._loop.add_writer(sock.fileno(), self._connected)
            self._timer = self._loop.call_later(self.timeout, self._timed_out)
            return
        sock.close()
        self._done(code == 0, connect_error(code, self.address) if code else "")

    def _connected(self) -> None:
        """Writable: the handshake ended; SO_ERROR says how."""
        assert self._sock is not None
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._end()
        self._done(code == 0, connect_error(code, self.address) if code else "")

    def _timed_out(self) -> None:
        self._end()
        self._done(False, f"timed out after {self.timeout:.2f}s")

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self._loop.remove_writer(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def abort(self) -> None:
        self._end()


async def connect(ip: str, port: int) -> tuple[bool, str]:
    """A TCP connect to a host name (resolved first), for what :class:`ConnectProbe` cannot
    take; the caller bounds the time."""
    _reader, writer = await asyncio.open_connection(ip, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def http(
    *,
    ip: str,
    port: int,
    check: Doc,
    host: str,
    tls: ssl.SSLContext | None,
) -> tuple[bool, str]:
    """Send the check's request; the answer's status class must be in ``HttpCode``. The caller
    bounds the time."""
    reader, writer = await asyncio.open_connection(ip, port, ssl=tls)
    try:
        method = check.get("HttpCheckMethod") or "HEAD"
        path = check.get("HttpCheckPath") or "/"
        request = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: clb-healthcheck\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.decode(errors="replace").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"not an HTTP answer: {status_line[:60]!r}"
    code = int(parts[1])
    mask = int(check.get("HttpCode") or 31)
    bit = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16}.get(code // 100, 0)
    if mask & bit:
        return True, ""
    return False, f"HTTP {code} is not in HttpCode {mask}"
