#!/usr/bin/python3
"""smtp-load.py - closed-loop SMTP session load for bench/tls-auth.sh (stdlib only).

  smtp-load.py tls   PORT [--clients 10] [--duration 10] [--server-pid PID ...]
  smtp-load.py auth  PORT --user U --password P [--clients 10] [--duration 10] [--server-pid PID ...]
  smtp-load.py probe PORT --user U --password P [--count 7]

tls:   each client process repeats: connect, 220, EHLO, STARTTLS, 220, full TLS handshake (no
       session resumption), EHLO, QUIT, 221.
auth:  each client process repeats: connect, 220, EHLO, AUTH PLAIN <initial response>, 235,
       QUIT, 221 (in clear: only the password check is measured).
probe: on an idle server, one client, COUNT sequential sessions of each kind: median latency of
       the AUTH command (sent -> 235) and of STARTTLS+handshake, plus what TLS was negotiated and
       the certificate's SHA-256 (so both servers are seen to do the same work).

tls/auth print one line:
  RESULT sessions=N errors=E quit_without_221=Q seconds=S rate=R client_cpu_s=C server_cpu_s=X first_error=...
rate = completed sessions / (last completion - start): sessions started before the deadline are
finished and counted. server_cpu_s = user+sys of the trees under each --server-pid (including
reaped children), over the measured interval. A session whose QUIT is answered by a bare close
instead of 221 still counts as completed, but is counted in quit_without_221 (reported as a
server bug by tls-auth.sh).
"""
import argparse
import base64
import hashlib
import multiprocessing as mp
import os
import socket
import ssl
import statistics
import sys
import time

HOST = "127.0.0.1"
EHLO = b"EHLO load.bench.test\r\n"


class Proto(Exception):
    pass


class Closed(Proto):
    pass


class Conn:
    """Line-oriented SMTP client over a plain or TLS socket."""

    def __init__(self, port, timeout=30.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """Read one (possibly multi-line) reply; return (code, text of all lines)."""
        lines = []
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                data = self.sock.recv(16384)
                if not data:
                    raise Closed("connection closed by server" + (f" after {lines!r}" if lines else ""))
                self.buf += data
                continue
            line, self.buf = self.buf[:i], self.buf[i + 2:]
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                try:
                    code = int(line[:3])
                except ValueError:
                    raise Proto(f"bad reply line {line!r}")
                return code, b"\n".join(lines)

    def expect(self, want, what):
        code, text = self.reply()
        if code != want:
            raise Proto(f"{what}: expected {want}, got {text[:200].decode(errors='replace')!r}")
        return text

    def cmd(self, line, want, what):
        self.sock.sendall(line)
        return self.expect(want, what)

    def starttls(self, ctx):
        self.cmd(b"STARTTLS\r\n", 220, "STARTTLS")
        if self.buf:
            raise Proto("data after the 220 to STARTTLS")
        self.sock = ctx.wrap_socket(self.sock, server_hostname=None)  # handshake happens here

    def quit(self):
        """QUIT; True if answered 221, False if the server just closed the connection."""
        self.sock.sendall(b"QUIT\r\n")
        try:
            self.expect(221, "QUIT")
        except Closed:
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed; the handshake's signature is still checked
    return ctx


def session_tls(port, ctx, auth_line):
    c = Conn(port)
    try:
        c.expect(220, "greeting")
        text = c.cmd(EHLO, 250, "EHLO")
        if b"STARTTLS" not in text.upper():
            raise Proto("no STARTTLS in the EHLO reply")
        c.starttls(ctx)
        c.cmd(EHLO, 250, "EHLO after STARTTLS")
        return c.quit()
    finally:
        c.close()


def session_auth(port, ctx, auth_line):
    c = Conn(port)
    try:
        c.expect(220, "greeting")
        c.cmd(EHLO, 250, "EHLO")
        c.cmd(auth_line, 235, "AUTH PLAIN")
        return c.quit()
    finally:
        c.close()


def worker(kind, port, auth_line, start_at, deadline, q):
    ctx = client_ctx()
    fn = session_tls if kind == "tls" else session_auth
    n = errors = no221 = 0
    first_error = ""
    last = start_at
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < deadline:
        try:
            if not fn(port, ctx, auth_line):
                no221 += 1
            n += 1
            last = time.time()
        except (OSError, Proto, ssl.SSLError) as e:
            errors += 1
            if not first_error:
                first_error = f"{type(e).__name__}: {e}"
            time.sleep(0.01)
    t = os.times()
    q.put((n, errors, last, first_error, t.user + t.system, no221))


def tree_cpu(pid):
    """user+sys seconds of pid and all its descendants, including their reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        kids.setdefault(int(f[1]), []).append((int(d), f))
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            s = fh.read()
    except OSError:
        return 0.0
    todo = [(pid, s[s.rindex(")") + 2:].split())]
    while todo:
        p, f = todo.pop()
        total += sum(int(x) for x in f[11:15]) / tick  # utime stime cutime cstime
        todo.extend(kids.get(p, []))
    return total


def auth_plain_line(user, password):
    return b"AUTH PLAIN " + base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()) + b"\r\n"


def run_load(a):
    auth_line = auth_plain_line(a.user or "", a.password or "")
    q = mp.Queue()
    start_at = time.time() + 0.3  # every process forked and ready
    deadline = start_at + a.duration
    procs = [mp.Process(target=worker, args=(a.kind, a.port, auth_line, start_at, deadline, q))
             for _ in range(a.clients)]
    for p in procs:
        p.start()
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = sum(tree_cpu(p) for p in a.server_pid)
    res = [q.get() for _ in procs]
    cpu1 = sum(tree_cpu(p) for p in a.server_pid)
    for p in procs:
        p.join()
    n = sum(r[0] for r in res)
    errors = sum(r[1] for r in res)
    end = max(r[2] for r in res)
    secs = max(end - start_at, 1e-9)
    first = next((r[3] for r in res if r[3]), "")
    ccpu = sum(r[4] for r in res)
    no221 = sum(r[5] for r in res)
    print(f"RESULT sessions={n} errors={errors} quit_without_221={no221} seconds={secs:.2f} rate={n / secs:.1f} "
          f"client_cpu_s={ccpu:.2f} server_cpu_s={cpu1 - cpu0 if a.server_pid else float('nan'):.2f}"
          + (f" first_error={first!r}" if first else ""))
    return 0 if n > 0 else 1


def run_probe(a):
    auth_line = auth_plain_line(a.user, a.password)
    ctx = client_ctx()
    auth_ms, tls_ms = [], []
    info = ""
    no221 = 0
    for _ in range(a.count):
        c = Conn(a.port)
        try:
            c.expect(220, "greeting")
            c.cmd(EHLO, 250, "EHLO")
            t0 = time.perf_counter()
            c.cmd(auth_line, 235, "AUTH PLAIN")
            auth_ms.append((time.perf_counter() - t0) * 1000)
            if not c.quit():
                no221 += 1
        finally:
            c.close()
        time.sleep(0.05)
        c = Conn(a.port)
        try:
            c.expect(220, "greeting")
            c.cmd(EHLO, 250, "EHLO")
            t0 = time.perf_counter()
            c.starttls(ctx)
            tls_ms.append((time.perf_counter() - t0) * 1000)
            der = c.sock.getpeercert(binary_form=True)
            info = (f"tls={c.sock.version()} cipher={c.sock.cipher()[0]} "
                    f"cert_sha256={hashlib.sha256(der).hexdigest()[:16]}")
            c.cmd(EHLO, 250, "EHLO after STARTTLS")
            if not c.quit():
                no221 += 1
        finally:
            c.close()
        time.sleep(0.05)
    print(f"PROBE auth_ms={statistics.median(auth_ms):.1f} auth_ms_min={min(auth_ms):.1f} "
          f"starttls_ms={statistics.median(tls_ms):.2f} {info} quit_without_221={no221}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["tls", "auth", "probe"])
    ap.add_argument("port", type=int)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=7)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--server-pid", type=int, action="append", default=[])
    a = ap.parse_args()
    if a.kind in ("auth", "probe") and (a.user is None or a.password is None):
        ap.error("auth and probe need --user and --password")
    try:
        return run_probe(a) if a.kind == "probe" else run_load(a)
    except (OSError, Proto, ssl.SSLError) as e:
        print(f"smtp-load: {a.kind} against 127.0.0.1:{a.port}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())
