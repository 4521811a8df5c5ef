"""A loopback TCP proxy for fault tests: the code under test reaches PostgreSQL through it, and the test
cuts the database off (every open connection dropped, new ones closed at once) and restores it on command.
No root needed."""
from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.hanging = False  # accept connections and never answer (a network that drops packets)
        self._held: list[socket.socket] = []
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.hanging:
                self._held.append(client)
                continue
            if not self.up:  # the database is "down": the connection is closed at once
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """The database goes away: open connections are dropped, new ones closed."""
        self.up = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def hang(self) -> None:
        """New connections are accepted and never answered (open ones are dropped)."""
        self.hanging = True
        self.cut()

    def restore(self) -> None:
        self.up, self.hanging = True, False
        held, self._held = self._held, []
        for s in held:
            s.close()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
