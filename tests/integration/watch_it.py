"""Helpers for the terminal tests (test_watch.py): `tern watch` as a child process whose output
is collected while it runs, a raw client of ternd's watch socket (DATA_DIR/watch) that may
refuse to read, and SEND/SOML/SAML transactions through smtplib's low-level commands.
"""
from __future__ import annotations

import json
import os
import pwd
import smtplib
import socket
import subprocess
import threading
import time

from tern_it import SANITIZER_MARKS, TIMEOUT, Ternd, dot_stuff, tern_binary

NOBODY = pwd.getpwnam("nobody")
SENDER = "sender@client.test"


class Watcher:
    """`tern watch ARGS` run as user (a name, or None: us), stdout and stderr read by threads so
    that the child never blocks on a full pipe unless told to (read=False)."""

    def __init__(self, args, user=None, env=None, read=True):
        self.args = list(args)
        self.proc = subprocess.Popen([str(tern_binary()), "watch", *self.args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, user=user,
                                     env=dict(os.environ, TZ="UTC", **(env or {})))
        self.out = bytearray()
        self.err = bytearray()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._pump, args=(self.proc.stderr, self.err),
                                         daemon=True)]
        if read:
            self.threads.append(threading.Thread(target=self._pump,
                                                 args=(self.proc.stdout, self.out), daemon=True))
        for t in self.threads:
            t.start()

    def _pump(self, f, buf):
        while True:
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                return
            with self.lock:
                buf += chunk

    def text(self) -> str:
        with self.lock:
            return bytes(self.out).decode("utf-8", "replace")

    def errtext(self) -> str:
        with self.lock:
            return bytes(self.err).decode("utf-8", "replace")

    def wait(self, pred, timeout=TIMEOUT, what="output"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"tern watch {self.args}: no {what} in {timeout}s\nstdout:\n"
                             f"{self.text()[-3000:]}\nstderr:\n{self.errtext()}")

    def ready(self, timeout=TIMEOUT) -> "Watcher":
        """Until ternd said ok (the watch is registered) or the process ended."""
        self.wait(lambda w: "watching " in w.errtext() or w.proc.poll() is not None, timeout,
                  "'watching' line")
        assert "watching " in self.errtext(), f"tern watch refused: {self.errtext()!r}"
        return self

    def refused(self, timeout=TIMEOUT) -> tuple[int, str]:
        """The exit status and stderr of a watch that must not start."""
        rc = self.proc.wait(timeout)
        for t in self.threads:
            t.join(timeout)
        return rc, self.errtext()

    def messages(self) -> list[str]:
        """The printed messages, each from its "Message from" line to its "EOF"."""
        parts = self.text().split("\nMessage from ")[1:]
        return ["Message from " + p for p in parts if "\nEOF\n" in p]

    def wait_messages(self, n, timeout=TIMEOUT) -> list[str]:
        self.wait(lambda w: len(w.messages()) >= n, timeout, f"{n} messages")
        return self.messages()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
        for t in self.threads:
            t.join(TIMEOUT)
        for m in SANITIZER_MARKS:
            assert m not in self.errtext(), f"tern watch:\n{self.errtext()}"


class Watchers:
    """Every watcher a test starts, stopped at its end; then waits until ternd has let go of
    each (so the next test starts with no terminal live)."""

    def __init__(self):
        self.started: list[Watcher] = []
        self.socks: list[socket.socket] = []

    def __call__(self, srv: Ternd, user=None, *extra, run_as=None, env=None, read=True,
                 wait=True) -> Watcher:
        args = ["-c", str(srv.conf_path), *extra] + ([user] if user else [])
        w = Watcher(args, user=run_as, env=env, read=read)
        self.started.append(w)
        return w.ready() if wait else w

    def raw(self, srv: Ternd, request: dict, rcvbuf=None) -> tuple[socket.socket, str]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(TIMEOUT)
        s.connect(str(srv.data_dir / "watch"))
        self.socks.append(s)
        s.sendall(json.dumps(request).encode() + b"\n")
        answer = b""
        while b"\n" not in answer:
            chunk = s.recv(1)
            if not chunk:
                break
            answer += chunk
        return s, answer.decode("utf-8", "replace").rstrip("\n")

    def finish(self, srvs):
        for w in self.started:
            w.stop()
        for s in self.socks:
            s.close()
        for srv in srvs:
            wait_all_unwatched(srv)


def wait_all_unwatched(srv: Ternd, timeout=TIMEOUT):
    """Until ternd's log has as many 'stopped watching' lines as 'watching over' ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = srv.log_text()
        if t.count("stopped watching") >= t.count(" watching over "):
            return
        time.sleep(0.02)
    raise AssertionError("ternd still has terminals open:\n" + srv.log_tail(20))


def smtp(port) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    code, _ = s.ehlo("client.test")
    assert code == 250
    return s


def term_txn(port, verb, rcpts, message: bytes, frm=SENDER, smtp_conn=None):
    """VERB FROM, the RCPTs and DATA with smtplib's low-level commands. Returns (reply to
    VERB, [replies to RCPT], final reply or None when no RCPT was accepted): each reply as
    (code, text)."""
    s = smtp_conn or smtp(port)
    try:
        code, text = s.docmd(f"{verb} FROM:<{frm}>")
        first = (code, text.decode())
        rr = []
        for r in rcpts:
            c, t = s.docmd(f"RCPT TO:<{r}>")
            rr.append((c, t.decode()))
        final = None
        if any(c in (250, 251) for c, _ in rr):
            c, t = s.docmd("DATA")
            assert c == 354, (c, t)
            s.send(dot_stuff(message) + b".\r\n")
            c, t = s.getreply()
            final = (c, t.decode())
        else:
            s.docmd("RSET")
        return first, rr, final
    finally:
        if smtp_conn is None:
            s.quit()


def msg(subject: str, body: str | bytes = "hello terminal\r\n") -> bytes:
    if isinstance(body, str):
        body = body.encode()
    return (f"From: <{SENDER}>\r\nTo: <alice@example.org>\r\nSubject: {subject}\r\n\r\n"
            .encode() + body)
