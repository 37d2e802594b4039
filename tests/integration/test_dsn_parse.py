"""Delivery reports (src/relay/dsn*.c) read by a mail program that is not ours: Python's email
package parses the sample reports the unit test binary writes (tests/unit/test_dsn.c, run
with DSN_DUMP=DIR) and must find a multipart/report without defects whose delivery-status part
names each recipient, its action, status and the remote reply, and whose last part holds the
original message's header section (or the whole message).

The binary is the one beside $TERND: BUILD/tests/test_dsn (made by `make BUILD=... unit`).
"""
from __future__ import annotations

import email
import email.policy
import email.utils
import os
import re
import subprocess
from pathlib import Path

import pytest

from tern_it import ternd_binary

# defects raise instead of being noted: a report Python has to guess at fails here
STRICT = email.policy.default.clone(raise_on_defect=True)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, bytes]:
    binary = ternd_binary().parent / "tests" / "test_dsn"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: build the unit tests beside ternd "
                    f"(make BUILD={binary.parent.parent} unit)", pytrace=False)
    d = tmp_path_factory.mktemp("dsn")
    p = subprocess.run([str(binary)], env=dict(os.environ, DSN_DUMP=str(d)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{binary} with DSN_DUMP failed:\n{p.stdout}\n{p.stderr}"
    out = {f.stem: f.read_bytes() for f in d.glob("*.eml")}
    assert set(out) == {"failed", "delayed", "full", "utf8"}, sorted(out)
    return out


def parse(raw: bytes) -> email.message.EmailMessage:
    assert b"\n" not in raw.replace(b"\r\n", b""), "a bare LF"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "a line over 998 octets"
    msg = email.message_from_bytes(raw, policy=STRICT)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    return msg


def status_blocks(msg) -> list:
    """The delivery-status part's field groups: per-message first, then one per recipient."""
    parts = list(msg.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status"
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2
    return blocks


def words(s: str) -> str:
    return " ".join(str(s).split())


def test_failure_report(samples):
    msg = parse(samples["failed"])
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["To"].addresses[0].addr_spec == "alice@example.org"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.test.example"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Date"].datetime == email.utils.parsedate_to_datetime(
        "Tue, 14 Nov 2023 22:13:20 +0000")
    assert re.fullmatch(r"<[^<>@\s]+@mx\.test\.example>", str(msg["Message-ID"]))

    text, status, headers = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    body = words(text.get_content())
    assert "This is the mail system at host mx.test.example." in body
    assert "<bob@example.com>" in body and "User unknown" in body

    per_msg, bob, carol = status_blocks(msg)
    assert per_msg["Reporting-MTA"] == "dns; mx.test.example"
    assert per_msg["Original-Envelope-Id"] == "QQ314159"
    assert email.utils.parsedate_to_datetime(per_msg["Arrival-Date"]).timestamp() == \
        1700000000 - 4 * 3600
    assert bob["Final-Recipient"] == "rfc822; bob@example.com"
    assert bob["Original-Recipient"] == "rfc822; bob@alias.example.com"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.com"
    assert words(bob["Diagnostic-Code"]) == (
        "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown")
    assert carol["Final-Recipient"] == "rfc822; carol@nowhere.example"
    assert carol["Status"] == "5.0.0"
    assert "Host or domain name not found" in carol["Diagnostic-Code"]

    assert headers.get_content_type() == "text/rfc822-headers"
    original = email.message_from_string(headers.get_content(), policy=STRICT)
    assert original["Subject"] == "Lunch on Friday?"
    assert original["Message-ID"] == "<lunch@example.org>"
    assert "BODY-MARKER" not in headers.get_content()


def test_delay_notice(samples):
    msg = parse(samples["delayed"])
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    text = words(next(msg.iter_parts()).get_content())
    assert "you do not need to send your message again" in text
    _, dave = status_blocks(msg)
    assert dave["Final-Recipient"] == "rfc822; dave@example.net"
    assert dave["Action"] == "delayed"
    assert dave["Status"] == "4.7.1"
    assert words(dave["Diagnostic-Code"]) == \
        "smtp; 451 4.7.1 Greylisted, please try again later"
    assert email.utils.parsedate_to_datetime(dave["Will-Retry-Until"]).timestamp() == \
        1700000000 + 4 * 86400


def test_whole_message_returned(samples):
    msg = parse(samples["full"])
    returned = list(msg.iter_parts())[2]
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_content()
    assert inner["Subject"] == "Lunch on Friday?"
    assert "BODY-MARKER: noon at the usual place?" in inner.get_content()


def test_utf8_recipient(samples):
    raw = samples["utf8"]
    msg = parse(raw)
    text = next(msg.iter_parts())
    assert "jösé+tag@exämple.org" in text.get_content()
    _, rcpt = status_blocks(msg)
    value = rcpt["Final-Recipient"]
    kind, _, addr = value.partition(";")
    assert kind == "utf-8"
    # RFC 6533's utf-8-addr-xtext: \x{HEX} stands for each character outside its QCHAR set
    decoded = re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: chr(int(m.group(1), 16)), addr.strip())
    assert decoded == "jösé+tag@exämple.org"
    assert value.isascii()
