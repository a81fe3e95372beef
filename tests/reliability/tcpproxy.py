"""A TCP proxy on loopback that the test can cut: the database "goes away" for a while.

    with CuttableProxy(("127.0.0.1", 5432)) as proxy:     # serve connects to proxy.port
        proxy.cut()        # every open connection is reset and new ones are refused
        proxy.restore()    # listening again on the same port

Cutting is what a database restart or a network partition looks like to the client: pooled
connections die mid-use and reconnecting fails with "connection refused" until it is back.
"""

from __future__ import annotations

import socket
import struct
import threading


class CuttableProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.connections = 0
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def __enter__(self) -> "CuttableProxy":
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self.cut()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        if listener is not None:
            # close() alone would leave the socket listening while accept() blocks on it in
            # the other thread (and new connections would queue and hang): shutdown wakes it.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for client, upstream in pairs:
            for sock in (client, upstream):
                _reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:                 # closed by cut()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:          # cut meanwhile
                    _reset(client)
                    _reset(upstream)
                    return
                self._pairs.append((client, upstream))
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), name="proxy-pump", daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):       # one side ended (or was cut): end the other side too
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _reset(sock: socket.socket) -> None:
    """Abort the connection: RST to the peer (SO_LINGER 0).

    A socket closed while another thread is blocked in recv() on it is not released (the call
    holds it): no RST goes out and the peer waits for ever, a black hole rather than a cut.
    So the reading side is shut first, which wakes the pump; then the close resets.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()
