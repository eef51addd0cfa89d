"""TLS in front of waitress, in the same process: the standard library's ``ssl`` under asyncio.

waitress, chosen for how it bounds connections (``server.py``), does no TLS, and the servers that do
either give every connection a worker that a silent client holds (cheroot) or have no connection
cap. So ``TlsFront`` accepts on the public port, does the handshake in one asyncio loop, and pipes
each decrypted stream to waitress over a Unix socket in a private directory (mode 0700: no other
user can reach waitress around TLS). Each bound holds:

- a client silent before or during the handshake is dropped after the server's timeout
  (``ssl_handshake_timeout``); after it, waitress' own read and idle timeouts close the pipe;
- memory: a TLS connection costs about 270 KiB (asyncio reads it through a 256 KiB buffer), so a
  connection gets its TLS state only once it has sent something, and at most ``max_handshakes``
  handshakes run at once (128: 34 MiB); the others wait, holding a descriptor only. Without this,
  a few hundred idle connections took more memory than the Kubernetes limit (1,600: 600 MiB);
- at most ``max_descriptors`` descriptors: a connection holds one during its handshake and three
  once piped (its own, and both ends of the Unix socket); at the limit the front stops accepting
  and new connections wait in the backlog, as waitress does, and a finished handshake waits for
  its two more;
- flow control: a side that cannot keep up pauses reading on the other, so nothing buffers
  without bound.

The certificate, key and client CA are re-read when one of their files changes on disk (cert-manager
and kubelet replace them by renaming): before each handshake the front compares the files' inode,
size and mtime, which costs a few ``stat`` calls, and builds a fresh context when they differ. A pair
that fails to load (half written) keeps the old context, with one warning per change.

Only asyncio's documented API is used: ``sock_accept``, ``connect_accepted_socket`` and
``create_unix_connection`` with protocols.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable

from exporter.config import ConfigError
from exporter.serving.web_config import OPTION, TlsSettings

log = logging.getLogger(__name__)

# What a pipe holds: the client's socket, and both ends of the Unix socket to waitress.
DESCRIPTORS_PER_CONNECTION = 3


def build_context(settings: TlsSettings) -> ssl.SSLContext:
    """A server context as the settings say; ``ConfigError`` naming the file that fails."""
    for key, path in (("cert_file", settings.cert_file), ("key_file", settings.key_file)) + (
        (("client_ca_file", settings.client_ca_file),) if settings.client_ca_file else ()
    ):
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise ConfigError(f"{OPTION}: cannot read {key} {path}: {error.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = settings.min_version
    context.maximum_version = settings.max_version
    try:
        # Without a password callback OpenSSL asks for a passphrase on the terminal (a start-up that
        # hangs, or a handshake that does at rotation) or fails with EINVAL when there is none.
        context.load_cert_chain(settings.cert_file, settings.key_file, password=_no_passphrase)
    except _EncryptedKey:
        raise ConfigError(
            f"{OPTION}: key_file {settings.key_file} is encrypted: give the key without a passphrase"
        ) from None
    except ssl.SSLError as error:
        raise ConfigError(
            f"{OPTION}: cert_file {settings.cert_file} and key_file {settings.key_file} are not a "
            f"certificate and its key ({error.reason or error})"
        ) from None
    if settings.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=settings.client_ca_file)
        except ssl.SSLError as error:
            raise ConfigError(
                f"{OPTION}: client_ca_file {settings.client_ca_file} holds no certificate "
                f"({error.reason or error})"
            ) from None
    context.verify_mode = settings.verify_mode
    if settings.ciphers is not None:
        context.set_ciphers(settings.ciphers)
    if settings.prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.curve is not None:
        context.set_ecdh_curve(settings.curve)
    return context


class _EncryptedKey(Exception):
    """The key file asks for a passphrase, which the web config format has no place for."""


def _no_passphrase() -> bytes:
    raise _EncryptedKey


def _signature(settings: TlsSettings) -> tuple[tuple[int, int, int, int] | None, ...]:
    """What tells that a file was replaced or rewritten: inode, device, size and mtime of each."""
    signature: list[tuple[int, int, int, int] | None] = []
    for path in settings.files:
        try:
            status = os.stat(path)
        except OSError:
            signature.append(None)
        else:
            signature.append((status.st_ino, status.st_dev, status.st_size, status.st_mtime_ns))
    return tuple(signature)


class ReloadingContext:
    """The TLS context, built again when its files change on disk. Called from one thread only."""

    def __init__(
        self, settings: TlsSettings, build: Callable[[TlsSettings], ssl.SSLContext] = build_context
    ) -> None:
        self._settings = settings
        self._build = build
        self._signature = _signature(settings)
        self._context = build(settings)
        self._failed: object = None

    def current(self) -> ssl.SSLContext:
        signature = _signature(self._settings)
        if signature in (self._signature, self._failed):
            return self._context
        try:
            context = self._build(self._settings)
        except ConfigError as error:
            self._failed = signature
            log.warning("keeping the TLS certificate in use: %s", error)
        else:
            self._context, self._signature = context, signature
            log.info("TLS certificate re-read from %s", self._settings.cert_file)
        return self._context


class _Pipe(asyncio.Protocol):
    """One side of a pipe: what it receives goes to the other side, and when one closes both do.

    The client's side, once lost, aborts waitress' side instead of closing it: what that side still
    holds are requests of a client that is gone, and waitress, blocked on answers nobody reads,
    would never take them, so a close that waits for them to go out would hold both ends forever.
    """

    def __init__(self, *, client: bool = False) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.other: _Pipe | None = None
        self.closed = asyncio.get_running_loop().create_future()
        # What arrived before the other side existed: reading is paused then, but a TLS transport
        # may still hand over what came with the end of the handshake (Python 3.10 does).
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Nothing more is read until the other side exists.
        transport.pause_reading()

    def join(self, other: _Pipe) -> None:
        self.other = other
        if other.transport is not None:
            for data in self._early:
                other.transport.write(data)
        self._early.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        # HTTP needs no half-closed connections, and TLS transports cannot do them.
        self.close_other()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client and self.other is not None and self.other.transport is not None:
            self.other.transport.abort()
        self.close_other()
        if not self.closed.done():
            self.closed.set_result(None)

    def close_other(self) -> None:
        # close(), not abort(): what was written to the other side still goes out first.
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()

    # Flow control: a side whose writes pile up stops the other side's reading.
    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TlsFront:
    """Accepts TLS connections on ``listener`` and pipes each to the Unix socket at ``backend``."""

    def __init__(
        self,
        listener: socket.socket,
        backend: str,
        contexts: ReloadingContext,
        *,
        handshake_timeout: float,
        max_descriptors: int,
        max_handshakes: int,
        allowed_sans: tuple[str, ...] = (),
    ) -> None:
        listener.setblocking(False)
        self._listener = listener
        self._backend = backend
        self._contexts = contexts
        self._handshake_timeout = handshake_timeout
        self._max_descriptors = max_descriptors
        self._max_handshakes = max_handshakes
        self._allowed_sans = set(allowed_sans)
        self._loop = asyncio.new_event_loop()
        self._pipes: set[_Pipe] = set()
        self._serving: set[asyncio.Task[None]] = set()
        self._piping: set[asyncio.Task[None]] = set()  # those past the handshake
        self._accepting: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    def stop(self, timeout: float) -> None:
        """Stop accepting, let every pipe write out what it holds and close, then end the loop."""
        try:
            asyncio.run_coroutine_threadsafe(self._stop(timeout), self._loop).result(timeout + 1)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self.close()

    def close(self) -> None:
        """The listening socket, and the loop once it no longer runs."""
        self._listener.close()
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    async def _start(self) -> None:
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _stop(self, timeout: float) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        # The pipes, which waitress has drained, write out what they hold and close; handshakes
        # still under way end here.
        for pipe in list(self._pipes):
            pipe.close()
        for task in self._serving - self._piping:
            task.cancel()
        if self._serving:
            _, pending = await asyncio.wait(list(self._serving), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        descriptors = asyncio.Semaphore(self._max_descriptors)
        handshakes = asyncio.Semaphore(self._max_handshakes)
        while True:
            # At the limit, stop accepting: new connections wait in the backlog.
            await descriptors.acquire()
            try:
                client, _ = await loop.sock_accept(self._listener)
            except OSError as error:
                descriptors.release()
                # Out of descriptors despite the cap (something else holds them): let some close
                # rather than spin on accept().
                log.warning("cannot accept a connection: %s", error.strerror or error)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._serve(client, descriptors, handshakes))
            self._serving.add(task)
            task.add_done_callback(self._served)

    def _served(self, task: asyncio.Task[None]) -> None:
        self._serving.discard(task)
        self._piping.discard(task)

    async def _serve(
        self, client: socket.socket, descriptors: asyncio.Semaphore, handshakes: asyncio.Semaphore
    ) -> None:
        """One connection, which holds one of ``descriptors``; it takes two more to be piped."""
        held = 1
        try:
            held = await self._handshake_and_pipe(client, descriptors, handshakes)
        finally:
            for _ in range(held):
                descriptors.release()

    async def _handshake_and_pipe(
        self, client: socket.socket, descriptors: asyncio.Semaphore, handshakes: asyncio.Semaphore
    ) -> int:
        """How many of ``descriptors`` the connection held, once it is over."""
        loop = asyncio.get_running_loop()
        try:
            # asyncio sets this only on sockets whose proto says TCP, which an accepted one does
            # not: without it, the body after the headers waits for a delayed ACK (40 ms) each answer.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.wait_for(_readable(loop, client), self._handshake_timeout)
            async with handshakes:
                transport, front = await loop.connect_accepted_socket(
                    functools.partial(_Pipe, client=True),
                    client,
                    ssl=self._contexts.current(),
                    ssl_handshake_timeout=self._handshake_timeout,
                )
        except (OSError, asyncio.TimeoutError) as error:
            # A plain-HTTP request, a client without the certificate asked for, a scanner: no
            # more than a debug line each, since anyone can cause them.
            log.debug("TLS handshake failed: %s", error)
            # The traceback's frames hold the failed connection's 256 KiB buffer in a cycle that
            # only the garbage collector breaks: without this, 400 failed handshakes kept 100 MiB.
            error.__traceback__ = None
            client.close()
            return 1
        if self._allowed_sans and not self._allowed(transport.get_extra_info("peercert")):
            log.warning("refused a client certificate whose SANs are not in client_allowed_sans")
            transport.close()
            return 1
        self._pipes.add(front)
        task = asyncio.current_task()
        if task is not None:
            self._piping.add(task)
        held = 1
        try:
            for _ in range(DESCRIPTORS_PER_CONNECTION - 1):
                await descriptors.acquire()
                held += 1
            try:
                _, back = await loop.create_unix_connection(_Pipe, self._backend)
            except OSError as error:
                log.warning("cannot reach the HTTP server behind TLS: %s", error.strerror or error)
                transport.close()
                return held
            front.join(back)
            back.join(front)
            if front.closed.done():  # the client left while waitress was being reached
                back.close()
            await asyncio.gather(front.closed, back.closed)
        finally:
            self._pipes.discard(front)
            if held < DESCRIPTORS_PER_CONNECTION:  # cancelled while waiting for descriptors
                transport.close()
        return held

    def _allowed(self, certificate: object) -> bool:
        names = certificate.get("subjectAltName", ()) if isinstance(certificate, dict) else ()
        return any(_san_text(kind, value) in self._allowed_sans for kind, value in names)


def _san_text(kind: str, value: str) -> str:
    """A SAN as the Go toolkit compares it: an IP address in its short form (``2001:db8::1``),
    where Python's ``getpeercert`` writes IPv6 long and in capitals."""
    if kind == "IP Address":
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            return value
    return value


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Returns once ``sock`` has something to read (or is closed), without reading it."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())
