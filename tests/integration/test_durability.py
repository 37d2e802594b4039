"""Promise 1: nothing acknowledged is lost. kill -9 under load, restart, and every message that
got its 250 is in every recipient's new/, byte for byte; nothing in new/ is partial. And many
sessions delivering into one Maildir at once lose nothing and never collide on a name."""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from tern_it import Conn, Delivered, ProtocolError, make_message, message_id_of

SENDER = "load@client.test"
EXPANSION = {"team@example.org": ["alice@example.org", "bob@example.org"]}
RCPT_SETS = [["alice@example.org"], ["bob@example.org"], ["carol@example.net"],
             ["team@example.org"], ["alice@example.org", "carol@example.net"]]


def mailboxes_of(rcpts):
    out = set()
    for r in rcpts:
        out.update(EXPANSION.get(r, [r]))
    return out


def scan_new(t) -> dict[str, list[tuple[str, Delivered]]]:
    """Message-ID -> [(mailbox, file)] over every new/ and cur/ under mail/."""
    found: dict[str, list[tuple[str, Delivered]]] = {}
    for p in sorted(t.all_delivered_files()):
        d = Delivered(p)
        mailbox = f"{p.parent.parent.name}@{p.parent.parent.parent.name}"
        msgid = message_id_of(d.body) if d.body is not None else None
        found.setdefault(msgid or f"?{p}", []).append((mailbox, d))
    return found


def run_session(port, batch, on_ack, errors, killed, timeout=30):
    """One session sending its batch one message at a time; stops quietly once ternd is dead."""
    try:
        c = Conn(port, timeout=timeout)
        c.ehlo()
        for m in batch:
            c.expect(f"MAIL FROM:<{SENDER}>", "250")
            for r in m["rcpts"]:
                c.expect(f"RCPT TO:<{r}>", "250")
            r = c.data(m["msg"])
            on_ack(m, r)
        c.quit()
    except (OSError, ProtocolError, AssertionError) as e:
        if not killed.is_set():
            errors.append(f"{type(e).__name__}: {e}")


def test_kill9_under_load_loses_nothing_acknowledged(ternd_factory):
    t = ternd_factory()
    rnd = random.Random(51766)
    messages = []
    for i in range(200):
        rcpts = RCPT_SETS[i % len(RCPT_SETS)]
        msgid, msg = make_message(frm=SENDER, to=rcpts[0], subject=f"load {i}", rnd=rnd)
        messages.append({"msgid": msgid, "msg": msg, "rcpts": rcpts,
                         "mailboxes": mailboxes_of(rcpts)})
    by_id = {m["msgid"]: m for m in messages}
    acked: set[str] = set()
    lock = threading.Lock()
    enough = threading.Event()
    killed = threading.Event()
    errors: list[str] = []
    kill_at = 60

    def on_ack(m, r):
        with lock:
            acked.add(m["msgid"])
            if len(acked) >= kill_at:
                enough.set()

    threads = [threading.Thread(target=run_session, daemon=True,
                                args=(t.smtp_port, messages[k::20], on_ack, errors, killed))
               for k in range(20)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + 60
    while not enough.wait(0.05):
        assert not errors, "errors before the kill:\n" + "\n".join(errors[:5])
        assert any(th.is_alive() for th in threads), "all sessions ended before the kill"
        assert time.monotonic() < deadline, f"only {len(acked)} acknowledged in 60 s"
    killed.set()
    t.kill9()
    with lock:
        acked_at_kill = set(acked)
    for th in threads:
        th.join(30)
    assert not any(th.is_alive() for th in threads), "a session hung after ternd was killed"
    assert not errors, "errors before the kill:\n" + "\n".join(errors[:5])
    assert kill_at <= len(acked_at_kill) < len(messages), \
        f"kill did not land mid-load ({len(acked_at_kill)} of {len(messages)} acknowledged)"

    t.start()  # same data dir, same ports
    found = scan_new(t)
    problems = []
    for msgid, copies in found.items():
        m = by_id.get(msgid)
        if m is None:
            problems += [f"{d.path}: not one of the messages sent (partial or foreign): "
                         f"{d.raw[:200]!r}" for _, d in copies]
            continue
        boxes = [box for box, _ in copies]
        if len(boxes) != len(set(boxes)):
            problems.append(f"{msgid} delivered twice to one mailbox: {boxes}")
        for box, d in copies:
            problems += [f"{d.path}: {p}" for p in d.problems()]
            if box not in m["mailboxes"]:
                problems.append(f"{msgid} in {box}, not a recipient")
            if d.body != m["msg"]:
                problems.append(f"{d.path}: body differs from what was sent "
                                f"({len(d.body or b'')} vs {len(m['msg'])} bytes)")
            if d.return_path != SENDER:
                problems.append(f"{d.path}: Return-Path <{d.return_path}>")
    for msgid in sorted(acked_at_kill):
        have = {box for box, _ in found.get(msgid, [])}
        missing = by_id[msgid]["mailboxes"] - have
        if missing:
            problems.append(f"{msgid} got 250 but is missing from {sorted(missing)}")
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])
    print(f"kill -9 after {len(acked_at_kill)} of {len(messages)} acknowledged; "
          f"{sum(len(v) for v in found.values())} files in new/ for {len(found)} messages")

    # the restarted daemon takes mail again
    msgid, msg = make_message(frm=SENDER, subject="after restart")
    with Conn(t.smtp_port) as c:
        c.ehlo()
        c.expect(f"MAIL FROM:<{SENDER}>", "250")
        c.expect("RCPT TO:<bob@example.org>", "250")
        c.data(msg)
        c.quit()
    assert [d for d in t.mailbox("bob@example.org") if d.body == msg]


def test_concurrent_sessions_one_mailbox(ternd_factory):
    """10 sessions x 50 messages into alice's Maildir at once: 500 files, all distinct names,
    all distinct queue ids, every one byte-exact."""
    t = ternd_factory()
    rnd = random.Random(800)
    batches = []
    for k in range(10):
        batch = []
        for i in range(50):
            msgid, msg = make_message(frm=SENDER, subject=f"s{k} m{i}", rnd=rnd)
            batch.append({"msgid": msgid, "msg": msg, "rcpts": ["alice@example.org"]})
        batches.append(batch)
    sent = {m["msgid"]: m["msg"] for b in batches for m in b}
    ids: list[str] = []
    lock = threading.Lock()
    errors: list[str] = []
    never = threading.Event()

    def on_ack(m, r):
        with lock:
            ids.append(r.text.split()[-1])

    threads = [threading.Thread(target=run_session, daemon=True,
                                args=(t.smtp_port, b, on_ack, errors, never)) for b in batches]
    start = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(max(1.0, 120 - (time.monotonic() - start)))
    assert not any(th.is_alive() for th in threads), "sessions still running after 120 s"
    assert not errors, "\n".join(errors[:5])
    assert len(ids) == 500 and len(set(ids)) == 500, \
        f"{len(ids)} acknowledged, {len(set(ids))} distinct queue ids"
    got = t.mailbox("alice@example.org")
    assert len(got) == 500, f"{len(got)} files in alice/new"
    names = [d.base for d in got]
    assert len(set(names)) == 500, "two deliveries share a Maildir name"
    seen = set()
    for d in got:
        assert d.problems() == [], (d.path, d.problems())
        msgid = message_id_of(d.body)
        assert sent.get(msgid) == d.body, f"{d.path}: not byte-exact"
        seen.add(msgid)
    assert seen == set(sent)


def test_250_only_after_fsync_of_file_and_every_new_dir(ternd_factory):
    """Promise 1 at the syscall level: strace ternd while it takes one message for three
    mailboxes in two domains; before the write of "250 2.0.0 Ok: queued" the message file has
    been fsync'd and so has the new/ directory of every recipient Maildir."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace not installed")
    t = ternd_factory()
    out = t.root / "strace.txt"
    tracer = subprocess.Popen([strace, "-f", "-qq", "-y", "-s", "64", "-o", str(out),
                               "-e", "trace=fsync,fdatasync,write,writev,sendmsg,sendto",
                               "-p", str(t.pid)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:  # every thread of ternd traced
            if tracer.poll() is not None:
                pytest.skip(f"strace cannot attach: {tracer.stderr.read().decode()[:200]}")
            tids = os.listdir(f"/proc/{t.pid}/task")
            if all(_tracer_pid(t.pid, tid) for tid in tids):
                break
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        msgid, msg = make_message(frm=SENDER, to="team@example.org", subject="fsync")
        with Conn(t.smtp_port) as c:
            c.ehlo()
            c.expect(f"MAIL FROM:<{SENDER}>", "250")
            c.expect("RCPT TO:<team@example.org>", "250")
            c.expect("RCPT TO:<carol@example.net>", "250")
            c.data(msg)
            c.quit()
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
    lines = out.read_text(errors="replace").splitlines()
    pending: dict[str, str] = {}  # tid -> path of an fsync not yet returned
    synced: list[str] = []        # paths whose fsync returned 0, in order
    ack = None
    for i, line in enumerate(lines):
        parts = line.split(None, 1)  # strace pads short thread ids with extra spaces
        if len(parts) != 2:
            continue
        tid, rest = parts
        if re.match(r"^(write|writev|sendmsg|sendto)\(", rest) and "250 2.0.0 Ok: queued" in rest:
            ack = i
            break
        m = re.match(r"^f(?:data)?sync\(\d+<([^>]*)>\)?(.*)$", rest)
        if m:
            if "<unfinished ...>" in m.group(2):
                pending[tid] = m.group(1)
            elif re.search(r"= 0\b", m.group(2)):
                synced.append(m.group(1))
            continue
        m = re.match(r"^<\.\.\. f(?:data)?sync resumed>.*= 0\b", rest)
        if m and tid in pending:
            synced.append(pending.pop(tid))
    assert ack is not None, "no 250 2.0.0 Ok: queued in the trace:\n" + "\n".join(lines[-30:])
    mail = str(t.data_dir / "mail")
    dirs = {p for p in synced if p.startswith(mail) and p.endswith("/new")}
    files = [p for p in synced if p.startswith(mail) and re.search(r"/(tmp|new)/[^/]+$", p)]
    want = {f"{mail}/example.org/alice/new", f"{mail}/example.org/bob/new",
            f"{mail}/example.net/carol/new"}
    trace = "\n".join(lines[max(0, ack - 40):ack + 1])
    assert files, f"no fsync of the message file before the 250:\n{trace}"
    assert want <= dirs, f"new/ not fsync'd before the 250: {sorted(want - dirs)}\n{trace}"


def _tracer_pid(pid, tid) -> bool:
    try:
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return line.split()[1] != "0"
    except FileNotFoundError:
        return True  # thread gone
    return False
