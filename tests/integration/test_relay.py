"""Outbound delivery (issue 8): a real ternd delivers what authenticated users queued for other
domains to destinations on loopback: a scripted SMTP server (sink_it.Sink) that can defer,
refuse, stall or be down, a second ternd, and a real Postfix (../shared/bench/peers.sh). Routes
come from `route =` and, for the MX tests, from libunbound answering out of a local unbound.conf
(local-zone data): nothing leaves the machine.

What is checked: the bytes that arrive, the spool emptied only after the remote 250, retries on
4xx and on a destination that is down until it comes up, the RFC 3464 bounce to the sender for
a 550 (parsed with Python's email package), kill -9 in the middle of a delivery, null MX, and
the audit records of each attempt.
"""
from __future__ import annotations

import email
import email.policy
import json
import os
import smtplib
import subprocess
import time

import pytest

from sink_it import Sink
from tern_it import crypt_hash, free_port, make_message, tern_binary

PW = "relay-test-pw"
USERS = [
    ("alice@example.org", "Alice Liddell", "", crypt_hash(PW)),
    ("bob@example.org", "Bob Smith", "", crypt_hash(PW)),
]


def start(factory, routes: dict[str, int], extra=None, users=USERS, files=None, chmod=None):
    """A ternd that delivers outbound mail: routes {domain with '_' for '.': port on
    127.0.0.1}; files {name: text} written into its data dir first (ternd reads them after
    it drops privileges)."""
    cfg = {"relay.defer": "no", "relay.retry_min": "1s", "relay.retry_max": "2s",
           "auth.plaintext": "loopback"}
    cfg.update(extra or {})
    t = factory(config=cfg, users=users, start=False)
    for name, text in (files or {}).items():
        (t.data_dir / name).write_text(text)
    # route = is a key that repeats: write the lines ourselves
    if routes:
        t.sections["relay"]["route"] = "\nroute = ".join(
            f"{dom.replace('_', '.')} [127.0.0.1]:{port}" for dom, port in routes.items())
    t.write_files()
    for name, mode in (chmod or {}).items():
        os.chmod(t.data_dir / name, mode)
    t.start()
    return t


def submit(t, rcpts, frm="alice@example.org", subject="relay", body=None):
    msgid, msg = make_message(frm=frm, to=rcpts[0], subject=subject, body=body)
    with smtplib.SMTP("127.0.0.1", t.submission_port, timeout=20) as s:
        s.ehlo("client.test")
        s.login(frm, PW)
        refused = s.sendmail(frm, rcpts, msg)
        assert refused == {}, refused
    return msgid, msg


def spool_ids(t) -> set[str]:
    q = t.data_dir / "spool" / "queue"
    return {p.stem for p in q.glob("*.env")} if q.is_dir() else set()


def wait_for(cond, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def audit_records(t, event=None) -> list[dict]:
    p = t.data_dir / "audit" / "audit.log"
    recs = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return [r for r in recs if event is None or r["event"] == event]


def body_after_trace(data: bytes) -> bytes:
    """What follows the Received: field ternd added (the sink gets no Return-Path)."""
    assert data.startswith(b"Received: from "), data[:200]
    i = data.index(b"\r\n", 0)
    while data[i + 2:i + 3] in (b" ", b"\t"):
        i = data.index(b"\r\n", i + 2)
    return data[i + 2:]


def test_delivers_byte_exact_and_empties_the_spool(ternd_factory):
    port = free_port()
    with Sink(port) as sink:
        t = start(ternd_factory, {"dest_test": port})
        body = b"line one\r\n.starts with a dot\r\n..two dots\r\n" + "ünï\r\n".encode()
        msgid, msg = submit(t, ["bob@dest.test", "carol@dest.test"], body=body)
        txns = sink.wait_txns(1)
        assert len(txns) == 1, txns
        tx = txns[0]
        assert tx.mail.startswith("FROM:<alice@example.org>"), tx.mail
        assert sorted(tx.rcpts) == ["TO:<bob@dest.test>", "TO:<carol@dest.test>"], tx.rcpts
        assert tx.helo == "mx.test.example"
        assert body_after_trace(tx.data) == msg
        assert b"Return-Path:" not in tx.data
        wait_for(lambda: not spool_ids(t), what="the spool to empty")
        sent = [r for r in audit_records(t, "relay") if r["result"] == "sent"]
        assert {r["rcpt"] for r in sent} == {"bob@dest.test", "carol@dest.test"}, sent
        assert all(r["code"] == 250 and "127.0.0.1" in r["remote"] for r in sent), sent


def test_451_is_retried_then_delivered(ternd_factory):
    port = free_port()

    def answer(verb, arg, sink):
        if verb == "RCPT" and sink.count("RCPT") == 1:
            return "451 4.7.1 greylisted, try again"
        return None

    with Sink(port, answer) as sink:
        t = start(ternd_factory, {"dest_test": port})
        msgid, msg = submit(t, ["bob@dest.test"])
        txns = sink.wait_txns(1, timeout=40)
        assert len(txns) == 1 and body_after_trace(txns[0].data) == msg
        assert sink.count("RCPT") == 2, sink.counts
        wait_for(lambda: not spool_ids(t), what="the spool to empty")
        results = [r["result"] for r in audit_records(t, "relay")]
        assert results == ["deferred", "sent"], results
        deferred = audit_records(t, "relay")[0]
        assert deferred["code"] == 451 and "greylisted" in deferred["reply"], deferred


def test_550_bounces_to_the_sender_as_a_dsn(ternd_factory):
    port = free_port()

    def answer(verb, arg, sink):
        if verb == "RCPT" and "nobody" in arg:
            return "550 5.1.1 <nobody@dest.test>: no such user"
        return None

    with Sink(port, answer) as sink:
        t = start(ternd_factory, {"dest_test": port})
        msgid, msg = submit(t, ["nobody@dest.test", "bob@dest.test"], subject="will bounce")
        sink.wait_txns(1)
        bounce = wait_for(lambda: t.mailbox("alice@example.org"), what="the bounce")
        assert len(bounce) == 1
        raw = bounce[0].path.read_bytes()
        assert raw.startswith(b"Return-Path: <>\r\n"), raw[:100]
        m = email.message_from_bytes(raw, policy=email.policy.default)
        assert m.get_content_type() == "multipart/report"
        assert m.get_param("report-type") == "delivery-status"
        assert m["Auto-Submitted"] == "auto-replied"
        parts = list(m.iter_parts())
        ds = [p for p in parts if p.get_content_type() == "message/delivery-status"][0]
        groups = ds.get_payload()  # per-message fields, then one group per recipient
        rcpts = [g for g in groups if g.get("Final-Recipient")]
        assert len(rcpts) == 1, [dict(g) for g in groups]
        g = rcpts[0]
        assert "nobody@dest.test" in g["Final-Recipient"]
        assert g["Action"].strip() == "failed"
        assert g["Status"].strip() == "5.1.1"
        assert "550" in g["Diagnostic-Code"] and "no such user" in g["Diagnostic-Code"]
        hdrs = [p for p in parts if p.get_content_type() in ("text/rfc822-headers",
                                                             "message/rfc822")][0]
        assert "will bounce" in hdrs.as_string()
        wait_for(lambda: not spool_ids(t), what="the spool to empty")
        kinds = [(r["kind"], r["to"]) for r in audit_records(t, "bounce")]
        assert kinds == [("failed", "alice@example.org")], kinds
        # tern audit trace tells the whole story: the session, the attempt, the bounce, and the
        # bounce's own delivery into alice's Maildir
        p = subprocess.run([str(tern_binary()), "audit", "trace", "--json", "-c",
                            str(t.conf_path), msgid], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        events = [json.loads(line)["event"] for line in p.stdout.splitlines()]
        assert events[:1] == ["connect"] and "message" in events, events
        tail = events[events.index("message") + 1:]
        assert [e for e in tail if e in ("relay", "bounce")] == \
            ["relay", "relay", "bounce", "relay"], events


def test_down_destination_is_retried_until_it_comes_up(ternd_factory):
    port = free_port()
    t = start(ternd_factory, {"dest_test": port})
    msgid, msg = submit(t, ["bob@dest.test"])
    qid = wait_for(lambda: spool_ids(t), what="the entry")
    qid = next(iter(qid))
    state = t.data_dir / "spool" / "queue" / f"{qid}.state"
    st = wait_for(lambda: state.exists() and json.loads(state.read_text()), what="a state")
    assert st["attempts"] >= 1, st
    assert "refused" in json.dumps(st).lower(), st
    with Sink(port) as sink:
        txns = sink.wait_txns(1, timeout=40)
        assert len(txns) == 1 and body_after_trace(txns[0].data) == msg
        wait_for(lambda: not spool_ids(t), what="the spool to empty")


def test_kill9_during_delivery_loses_nothing(ternd_factory):
    port = free_port()
    with Sink(port) as sink:
        sink.stall.set()  # the final dot is never answered
        t = start(ternd_factory, {"dest_test": port})
        msgid, msg = submit(t, ["bob@dest.test"])
        wait_for(lambda: sink.count("DATA") >= 1, what="DATA")
        time.sleep(0.3)
        t.kill9()
        assert spool_ids(t), "the entry left the spool without a 250"
        sink.stall.clear()
        t.start()
        txns = sink.wait_txns(1, timeout=40)
        assert len(txns) >= 1 and body_after_trace(txns[0].data) == msg
        wait_for(lambda: not spool_ids(t), what="the spool to empty")


def unbound_conf(data: list[str]) -> str:
    """libunbound answering from local data only: the test zone is static, and everything
    else is refused locally, so no query leaves the machine."""
    lines = ["server:", "  module-config: \"iterator\"", "  do-not-query-localhost: yes",
             "  local-zone: \".\" refuse", "  local-zone: \"mx.test.\" static"]
    lines += [f"  local-data: \"{d}\"" for d in data]
    return "\n".join(lines) + "\n"


def test_mx_records_are_followed_and_null_mx_bounces(ternd_factory):
    port = free_port()
    conf = unbound_conf([
        "good.mx.test. MX 20 backup.mx.test.",
        "good.mx.test. MX 10 primary.mx.test.",
        "primary.mx.test. A 127.0.0.1",
        "backup.mx.test. A 127.0.0.9",
        "null.mx.test. MX 0 .",
    ])
    with Sink(port) as sink:
        t = start(ternd_factory, {}, extra={"relay.resolver": "unbound.conf",
                                            "relay.smtp_port": str(port)},
                  files={"unbound.conf": conf})
        msgid, msg = submit(t, ["bob@good.mx.test"])
        txns = sink.wait_txns(1)
        assert len(txns) == 1 and body_after_trace(txns[0].data) == msg
        sent = [r for r in audit_records(t, "relay") if r["result"] == "sent"]
        assert sent and "primary.mx.test" in sent[0]["remote"], sent
        submit(t, ["who@null.mx.test"], subject="null mx")
        bounce = wait_for(lambda: t.mailbox("alice@example.org"), what="the bounce")
        m = email.message_from_bytes(bounce[0].path.read_bytes(), policy=email.policy.default)
        text = m.as_string()
        assert "who@null.mx.test" in text and "5.1.10" in text, text[:2000]


def test_second_ternd_receives_for_its_domain(ternd_factory):
    """ternd to ternd: the destination is another real ternd, whose local domain is
    example.net; what arrives in carol's Maildir is what alice sent."""
    dest = ternd_factory(users=[("carol@example.net", "Carol", "")],
                         aliases=["postmaster: carol@example.net"],
                         config={"server.domains": "example.net"})
    t = start(ternd_factory, {"example_net": dest.smtp_port},
              extra={"server.domains": "example.org"})
    msgid, msg = submit(t, ["carol@example.net"])
    got = wait_for(lambda: dest.mailbox("carol@example.net"), what="carol's copy")
    assert len(got) == 1
    assert got[0].path.read_bytes().endswith(msg)
    wait_for(lambda: not spool_ids(t), what="the spool to empty")


def test_etrn_starts_delivery_for_a_relay_domain(ternd_factory):
    """Mail for a relay domain is accepted from anyone; its destination is down, so it waits
    (retry_min 10 minutes); once the destination is up, ETRN on the smtp listener delivers it
    at once. ETRN for a domain tern does not relay for gets 459."""
    port = free_port()
    t = start(ternd_factory, {"etrn_test": port},
              extra={"relay.domains": "etrn.test", "relay.retry_min": "10m",
                     "relay.retry_max": "1h"})
    msgid, msg = make_message(frm="someone@client.test", to="bob@etrn.test")
    with smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=20) as s:
        s.ehlo("client.test")
        assert s.has_extn("etrn")
        assert s.sendmail("someone@client.test", ["bob@etrn.test"], msg) == {}
    qid = next(iter(wait_for(lambda: spool_ids(t), what="the entry")))
    state = t.data_dir / "spool" / "queue" / f"{qid}.state"
    wait_for(lambda: state.exists() and json.loads(state.read_text())["attempts"] >= 1,
             what="the first attempt")
    with Sink(port) as sink:
        with smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=20) as s:
            s.ehlo("client.test")
            code, text = s.docmd("ETRN", "other.test")
            assert code == 459, (code, text)
            code, text = s.docmd("ETRN", "etrn.test")
            assert code == 250, (code, text)
        txns = sink.wait_txns(1, timeout=20)
        assert len(txns) == 1 and body_after_trace(txns[0].data) == msg
        wait_for(lambda: not spool_ids(t), what="the spool to empty")
    nodes = [(r["node"], r["code"]) for r in audit_records(t, "etrn")]
    assert nodes == [("other.test", 459), ("etrn.test", 250)], nodes


def test_turn_reverses_roles_and_delivers_the_domains_queue(ternd_factory):
    """dana may TURN turn.test (users file turn=turn.test). Mail for turn.test waits in the
    queue (its MX host is down); dana authenticates, says TURN, gets 250, then acts as the
    server on the same connection: greets, and receives the queued message; tern QUITs."""
    dead = free_port()
    users = USERS + [("dana@example.org", "Dana Dialup", "turn=turn.test", crypt_hash(PW))]
    t = start(ternd_factory, {"turn_test": dead}, users=users,
              extra={"relay.domains": "turn.test", "relay.retry_min": "10m",
                     "relay.retry_max": "1h"})
    msgid, msg = make_message(frm="someone@client.test", to="dana@turn.test")
    with smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=20) as s:
        assert s.sendmail("someone@client.test", ["dana@turn.test"], msg) == {}
    qid = next(iter(wait_for(lambda: spool_ids(t), what="the entry")))
    state = t.data_dir / "spool" / "queue" / f"{qid}.state"
    wait_for(lambda: state.exists() and json.loads(state.read_text())["attempts"] >= 1,
             what="the first attempt")
    # not authenticated: refused
    with smtplib.SMTP("127.0.0.1", t.submission_port, timeout=20) as s:
        s.ehlo("client.test")
        assert s.docmd("TURN")[0] == 502
    s = smtplib.SMTP("127.0.0.1", t.submission_port, timeout=20)
    s.ehlo("dialup.turn.test")
    s.login("bob@example.org", PW)
    assert s.docmd("TURN")[0] == 550  # bob is not entitled to any domain
    s.close()
    s = smtplib.SMTP("127.0.0.1", t.submission_port, timeout=20)
    s.ehlo("dialup.turn.test")
    s.login("dana@example.org", PW)
    code, text = s.docmd("TURN")
    assert code == 250 and b"turn.test" in text, (code, text)
    sock = s.sock
    sock.settimeout(20)
    peer = Sink(None, name="dialup.turn.test")
    peer.serve(sock)  # greets 220, then takes what tern sends, until QUIT
    sock.close()
    assert len(peer.txns) == 1, peer.txns
    assert peer.txns[0].rcpts == ["TO:<dana@turn.test>"]
    assert body_after_trace(peer.txns[0].data) == msg
    wait_for(lambda: not spool_ids(t), what="the spool to empty")
    turns = [(r["domains"], r["code"]) for r in audit_records(t, "turn")]
    assert turns == [("", 502), ("", 550), ("turn.test", 250)], turns
    sent = [r for r in audit_records(t, "relay") if r["result"] == "sent"]
    assert [r["rcpt"] for r in sent] == ["dana@turn.test"], sent


def test_forwarded_user_gets_251_and_the_mail_goes_on(ternd_factory):
    port = free_port()
    users = USERS + [("fred@example.org", "Fred Forward", "forward=fred@dest.test",
                      crypt_hash(PW))]
    with Sink(port) as sink:
        t = start(ternd_factory, {"dest_test": port}, users=users)
        msgid, msg = make_message(frm="someone@client.test", to="fred@example.org")
        with smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=20) as s:
            s.ehlo("client.test")
            assert s.mail("someone@client.test")[0] == 250
            code, text = s.rcpt("fred@example.org")
            assert code == 251 and b"<fred@dest.test>" in text, (code, text)
            assert s.data(msg)[0] == 250
        txns = sink.wait_txns(1)
        assert txns[0].rcpts == ["TO:<fred@dest.test>"], txns
        assert txns[0].mail.startswith("FROM:<someone@client.test>")
        assert body_after_trace(txns[0].data) == msg
        assert t.mailbox("fred@example.org") == []


def test_postfix_receives_byte_exact(ternd_factory):
    """A real Postfix (../shared/bench/peers.sh) as the destination: what its virtual(8)
    writes, after its own trace fields and ours, is the message alice sent."""
    from test_client import Postfix, assert_postfix_exact, norm, postfix_raw
    pf = Postfix()
    try:
        pf.start()
        t = start(ternd_factory, {"example_test": pf.port})
        raw = norm(postfix_raw(7))  # smtplib sends bytes as they are: CRLF only
        before = pf.files()
        with smtplib.SMTP("127.0.0.1", t.submission_port, timeout=20) as s:
            s.login("alice@example.org", PW)
            assert s.sendmail("alice@example.org", ["rcpt@example.test"], raw) == {}
        new = pf.wait_new(before)
        assert len(new) == 1, (new, pf.log_text()[-2000:])
        assert_postfix_exact(pf, new[0], raw)
        wait_for(lambda: not spool_ids(t), what="the spool to empty")
        sent = [r for r in audit_records(t, "relay") if r["result"] == "sent"]
        assert len(sent) == 1 and sent[0]["code"] == 250, sent
    finally:
        pf.stop()


def test_delay_notice_once_then_delivery(ternd_factory):
    """delay_warning 1s with the destination down: alice is told once that her message is
    still being tried (a report with Action: delayed), then it is delivered when the
    destination comes up, and no failure report follows."""
    port = free_port()
    t = start(ternd_factory, {"dest_test": port}, extra={"relay.delay_warning": "1s"})
    msgid, msg = submit(t, ["bob@dest.test"], subject="slow one")
    notice = wait_for(lambda: t.mailbox("alice@example.org"), what="the delay notice")
    m = email.message_from_bytes(notice[0].path.read_bytes(), policy=email.policy.default)
    assert m.get_content_type() == "multipart/report"
    ds = [p for p in m.iter_parts() if p.get_content_type() == "message/delivery-status"][0]
    g = [g for g in ds.get_payload() if g.get("Final-Recipient")][0]
    assert g["Action"].strip() == "delayed" and g["Status"].strip().startswith("4."), dict(g)
    assert g.get("Will-Retry-Until"), dict(g)
    with Sink(port) as sink:
        txns = sink.wait_txns(1, timeout=40)
        assert len(txns) == 1 and body_after_trace(txns[0].data) == msg
        wait_for(lambda: not spool_ids(t), what="the spool to empty")
    time.sleep(1)
    assert len(t.mailbox("alice@example.org")) == 1  # one notice, no bounce
    kinds = [r["kind"] for r in audit_records(t, "bounce")]
    assert kinds == ["delayed"], kinds


def test_null_sender_failure_is_never_reported(ternd_factory):
    """RFC 5321 4.5.5: a message from <> that fails for good is dropped after the attempt,
    with a relay record saying so, and no report is made."""
    port = free_port()

    def answer(verb, arg, sink):
        return "550 5.1.1 no such user" if verb == "RCPT" else None

    with Sink(port, answer) as sink:
        t = start(ternd_factory, {"dest_test": port}, extra={"relay.domains": "dest.test"})
        msgid, msg = make_message(frm="", to="nobody@dest.test")
        with smtplib.SMTP("127.0.0.1", t.smtp_port, timeout=20) as s:
            assert s.sendmail("", ["nobody@dest.test"], msg) == {}
        wait_for(lambda: sink.count("RCPT") >= 1, what="the attempt")
        wait_for(lambda: not spool_ids(t), what="the spool to empty")
        failed = [r for r in audit_records(t, "relay") if r["result"] == "failed"]
        assert len(failed) == 1 and failed[0]["code"] == 550, failed
        assert audit_records(t, "bounce") == []
        assert t.mailbox("alice@example.org") == []


def test_relayhost_with_tls_and_auth(ternd_factory):
    """relayhost = [127.0.0.1]:PORT of a second ternd's submission listener, relayhost_tls =
    encrypt, relayhost_auth = a 0600 file: the mail goes there over STARTTLS, authenticated
    as alice (the smarthost of the same domain knows her too), and waits in that ternd's queue
    as hers (its own relay is deferred)."""
    dest = ternd_factory(users=[("alice@example.org", "Alice", "", crypt_hash(PW))],
                         aliases=["postmaster: alice@example.org"], tls=True,
                         config={"server.domains": "example.org"})
    t = start(ternd_factory, {}, extra={
        "server.domains": "example.org",
        "relay.relayhost": f"[127.0.0.1]:{dest.submission_port}",
        "relay.relayhost_tls": "encrypt", "relay.relayhost_auth": "relayhost.auth"},
        files={"relayhost.auth": f"alice@example.org {PW}\n"}, chmod={"relayhost.auth": 0o600})
    msgid, msg = submit(t, ["someone@far.test"])
    wait_for(lambda: not spool_ids(t), what="the spool to empty")
    ids = wait_for(lambda: spool_ids(dest), what="the entry at the relayhost")
    env = json.loads((dest.data_dir / "spool" / "queue" / f"{next(iter(ids))}.env").read_text())
    assert env["auth_user"] == "alice@example.org", env
    assert env["from"] == "alice@example.org", env
    assert [r if isinstance(r, str) else r.get("addr") for r in env["rcpts"]] == \
        ["someone@far.test"], env
    stored = (dest.data_dir / "spool" / "queue" / f"{next(iter(ids))}.msg").read_bytes()
    assert stored.endswith(msg)
    sent = [r for r in audit_records(t, "relay") if r["result"] == "sent"]
    assert len(sent) == 1 and sent[0]["tls"].startswith("TLSv1."), sent


def test_one_connection_carries_the_destinations_messages(ternd_factory):
    """Five messages queued while [relay] defer = yes; after a reload with defer = no and
    concurrency 1, they all go over one connection (MAIL five times, one greeting)."""
    port = free_port()
    with Sink(port) as sink:
        t = start(ternd_factory, {"dest_test": port},
                  extra={"relay.defer": "yes", "relay.concurrency": "1"})
        sent = [submit(t, [f"r{i}@dest.test"], subject=f"batch {i}")[1] for i in range(5)]
        wait_for(lambda: len(spool_ids(t)) == 5, what="five entries")
        time.sleep(0.5)
        assert sink.connections == 0
        t.sections["relay"]["defer"] = "no"
        t.write_files()
        t.reload()
        txns = sink.wait_txns(5)
        assert len(txns) == 5, txns
        assert sorted(body_after_trace(x.data) for x in txns) == sorted(sent)
        assert sink.connections == 1, sink.connections
        assert sink.count("MAIL") == 5
        wait_for(lambda: not spool_ids(t), what="the spool to empty")


def test_expired_message_is_returned_to_its_sender(ternd_factory):
    """A message queued longer than max_lifetime (5 days by default) whose destination still
    does not answer fails for good at its next attempt: alice gets a report with Action failed
    and Status 4.4.7 naming the last error, and the entry leaves the spool. The entry's age is
    set by rewriting its envelope's queued time while [relay] defer = yes holds it."""
    dead = free_port()
    t = start(ternd_factory, {"dest_test": dead}, extra={"relay.defer": "yes"})
    submit(t, ["bob@dest.test"], subject="too old")
    qid = next(iter(wait_for(lambda: spool_ids(t), what="the entry")))
    envp = t.data_dir / "spool" / "queue" / f"{qid}.env"
    env = json.loads(envp.read_text())
    env["queued"] = int(time.time()) - 6 * 86400
    envp.write_text(json.dumps(env))
    t.sections["relay"]["defer"] = "no"
    t.write_files()
    t.reload()
    bounce = wait_for(lambda: t.mailbox("alice@example.org"), what="the report")
    m = email.message_from_bytes(bounce[0].path.read_bytes(), policy=email.policy.default)
    ds = [p for p in m.iter_parts() if p.get_content_type() == "message/delivery-status"][0]
    g = [g for g in ds.get_payload() if g.get("Final-Recipient")][0]
    assert g["Action"].strip() == "failed" and g["Status"].strip() == "4.4.7", dict(g)
    assert "expired" in m.as_string(), m.as_string()[:2000]
    wait_for(lambda: not spool_ids(t), what="the spool to empty")
    assert [r["kind"] for r in audit_records(t, "bounce")] == ["failed"]
