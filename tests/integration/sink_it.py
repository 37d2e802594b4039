"""A scriptable SMTP server on loopback for the outbound-delivery tests: it records every
transaction it accepts (envelope and the exact DATA bytes, dot-unstuffed) and answers each
command as the test says (a function of the command and how many times the server has seen
it), so a test can make a destination refuse, defer, stall or come up late.

Imported by the test modules (pytest puts this directory on sys.path).
"""
from __future__ import annotations

import socket
import threading
import time


class Txn:
    def __init__(self):
        self.helo = ""
        self.mail = ""
        self.rcpts: list[str] = []
        self.data = b""

    def __repr__(self):
        return f"Txn({self.mail!r} -> {self.rcpts!r}, {len(self.data)} bytes)"


class Sink:
    """answer(verb, arg, sink) -> reply line or None for the default. verb is the upper-cased
    command (or "DOT" for the end of data, "CONNECT" for the greeting)."""

    def __init__(self, port: int | None, answer=None, name="sink.test", host="127.0.0.1"):
        """port None: no listener; serve(sock) speaks on a socket the test already has
        (TURN: the test's client connection, after the roles reverse)."""
        self.port = port
        self.host = host
        self.answer = answer or (lambda verb, arg, sink: None)
        self.name = name
        self.txns: list[Txn] = []
        self.counts: dict[str, int] = {}
        self.connections = 0
        self.lock = threading.Lock()
        self.stall = threading.Event()  # set: the final dot is never answered
        self._stop = False
        self.sock = None
        if port is None:
            return
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self._stop = True
        if self.sock:
            self.thread.join(5)
            self.sock.close()

    def serve(self, c: socket.socket):
        """One session on c, in this thread, until QUIT or the peer closes."""
        self._session(c)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def count(self, verb: str) -> int:
        with self.lock:
            return self.counts.get(verb, 0)

    def wait_txns(self, n: int, timeout=30.0) -> list[Txn]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.txns) >= n:
                    return list(self.txns)
            time.sleep(0.05)
        with self.lock:
            return list(self.txns)

    def _serve(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _reply(self, verb, arg, default):
        with self.lock:
            self.counts[verb] = self.counts.get(verb, 0) + 1
        r = self.answer(verb, arg, self)
        return (r or default).encode() + b"\r\n"

    def _session(self, c: socket.socket):
        with self.lock:
            self.connections += 1
        c.settimeout(60)
        f = c.makefile("rb")
        try:
            c.sendall(self._reply("CONNECT", "", f"220 {self.name} ESMTP sink"))
            txn = Txn()
            helo = ""
            while not self._stop:
                line = f.readline(4096)
                if not line:
                    return
                text = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb, _, arg = text.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    helo = arg
                    c.sendall(self._reply(verb, arg, f"250-{self.name}\r\n250-PIPELINING\r\n"
                                          "250-8BITMIME\r\n250-SIZE 50000000\r\n250 SMTPUTF8"))
                elif verb == "HELO":
                    helo = arg
                    c.sendall(self._reply(verb, arg, f"250 {self.name}"))
                elif verb == "MAIL":
                    txn = Txn()
                    txn.helo = helo
                    r = self._reply(verb, arg, "250 2.1.0 ok")
                    if r.startswith(b"2"):
                        txn.mail = arg
                    c.sendall(r)
                elif verb == "RCPT":
                    r = self._reply(verb, arg, "250 2.1.5 ok")
                    if r.startswith(b"2"):
                        txn.rcpts.append(arg)
                    c.sendall(r)
                elif verb == "DATA":
                    if not txn.rcpts:
                        c.sendall(self._reply(verb, arg, "554 5.5.1 no valid recipients"))
                        continue
                    r = self._reply(verb, arg, "354 go ahead")
                    c.sendall(r)
                    if not r.startswith(b"3"):
                        continue
                    data = bytearray()
                    while True:
                        dl = f.readline(100000)
                        if not dl:
                            return
                        if dl == b".\r\n":
                            break
                        data += dl[1:] if dl.startswith(b".") else dl
                    if self.stall.is_set():
                        time.sleep(120)
                        return
                    r = self._reply("DOT", "", "250 2.0.0 queued as sink")
                    if r.startswith(b"2"):
                        txn.data = bytes(data)
                        with self.lock:
                            self.txns.append(txn)
                    c.sendall(r)
                    txn = Txn()
                elif verb == "RSET":
                    txn = Txn()
                    c.sendall(self._reply(verb, arg, "250 2.0.0 ok"))
                elif verb == "QUIT":
                    c.sendall(self._reply(verb, arg, "221 2.0.0 bye"))
                    return
                elif verb == "NOOP":
                    c.sendall(self._reply(verb, arg, "250 2.0.0 ok"))
                else:
                    c.sendall(self._reply(verb, arg, "502 5.5.1 not here"))
        except OSError:
            return
        finally:
            c.close()
