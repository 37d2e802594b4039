"""SNI: with `[tls] sni = HOST CERT KEY`, a client naming HOST gets that certificate, on STARTTLS
and on smtps; a client naming anything else (or nothing) gets the default one; `*.domain`
matches one more label."""
from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time

from tern_it import HOSTNAME


def make_named_cert(dir_, name, stem):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(dir_ / f"{stem}-key.pem"),
                    "-out", str(dir_ / f"{stem}.pem"), "-days", "30", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return ssl.PEM_cert_to_DER_cert((dir_ / f"{stem}.pem").read_text())


def peer_cert(port, server_name, starttls):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we compare the exact certificate below
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if starttls:
            f = s.makefile("rb")
            assert f.readline().startswith(b"220")
            s.sendall(b"EHLO sni.test\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            s.sendall(b"STARTTLS\r\n")
            assert f.readline().startswith(b"220 2.0.0")
        t = ctx.wrap_socket(s, server_hostname=server_name)
        der = t.getpeercert(binary_form=True)
        t.close()
        return der
    finally:
        s.close()


def test_sni_picks_certificate_by_name(ternd_factory):
    t = ternd_factory(smtps=True, start=False)
    tls_dir = t.data_dir / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    net = make_named_cert(tls_dir, "mail.example.net", "net")
    wild = make_named_cert(tls_dir, "*.example.com", "wild")
    t.sections["tls"]["sni"] = "mail.example.net tls/net.pem tls/net-key.pem"
    t.write_files()
    # a second sni line: the INI helper writes one value per key, so append it by hand
    conf = t.conf_path.read_text().replace(
        "sni = mail.example.net tls/net.pem tls/net-key.pem",
        "sni = mail.example.net tls/net.pem tls/net-key.pem\n"
        "sni = *.example.com tls/wild.pem tls/wild-key.pem")
    t.conf_path.write_text(conf)
    t.chown()
    t.start()
    default = ssl.PEM_cert_to_DER_cert(t.cert_path.read_text())
    for starttls, port in ((True, t.smtp_port), (False, t.smtps_port)):
        assert peer_cert(port, "mail.example.net", starttls) == net
        assert peer_cert(port, "MAIL.Example.NET", starttls) == net
        assert peer_cert(port, "mx.example.com", starttls) == wild
        assert peer_cert(port, "a.b.example.com", starttls) == default  # one label only
        assert peer_cert(port, HOSTNAME, starttls) == default
        assert peer_cert(port, None, starttls) == default


def test_certificate_reloaded_on_sighup(ternd_factory):
    """A renewed certificate (new files at the same paths) is served after SIGHUP, with no
    restart; the listening sockets stay."""
    t = ternd_factory(smtps=True)
    old = ssl.PEM_cert_to_DER_cert(t.cert_path.read_text())
    assert peer_cert(t.smtps_port, HOSTNAME, False) == old
    tls_dir = t.cert_path.parent
    new = make_named_cert(tls_dir, HOSTNAME, "renewed")
    (tls_dir / "renewed.pem").replace(t.cert_path)
    (tls_dir / "renewed-key.pem").replace(tls_dir / "key.pem")
    t.chown()
    pid = t.pid
    t.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while peer_cert(t.smtps_port, HOSTNAME, False) != new:
        assert time.monotonic() < deadline, "SIGHUP did not load the renewed certificate"
        time.sleep(0.1)
    assert peer_cert(t.smtp_port, HOSTNAME, True) == new  # STARTTLS too
    assert t.alive() and t.pid == pid
