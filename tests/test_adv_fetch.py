"""`--fetch-remote` against a package that names addresses it should not make us reach, and servers that answer
with something that is not a media file (issue 30 item 5).

No test sends anything beyond this machine: every socket is made through `loopback_only`, which fails the test
on a connection to any other address (the refusals must come before any connection), and a "public" host is a
name the test's resolver gives a public address that the same fixture routes to the local server.
"""
from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest

from camtrapdp_helpers import make_package, registry
from deepfaune_plugin.cli import main
from test_safety_fetch import Server, jpeg_bytes, ours, remote_row, send

PUBLIC_IP = "93.184.216.34"  # routed by loopback_only to the test server, never reached


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def loopback_only(monkeypatch, server: Server):
    """Sockets that connect to loopback only; PUBLIC_IP goes to the test server; anything else fails the test."""
    attempts: list[str] = []
    port = int(server.url.rsplit(":", 1)[1])

    class Guarded(socket.socket):
        def connect(self, address):
            host = address[0]
            attempts.append(host)
            if host == PUBLIC_IP:
                address = ("127.0.0.1", port)
            elif not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                raise AssertionError(f"a connection to {host} was attempted")
            return super().connect(address)

        def connect_ex(self, address):
            raise AssertionError("connect_ex is not expected")

    monkeypatch.setattr(socket, "socket", Guarded)
    return attempts


@pytest.fixture
def resolver(monkeypatch):
    """Names the test resolves itself (name -> addresses); every other name goes to the system's resolver."""
    names: dict[str, list[str]] = {}
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        asked.append(host)
        if host not in names:
            return real(host, port, family, type, proto, flags)
        rows = []
        for address in names[host]:
            ip = ipaddress.ip_address(address)
            family_ = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            rows.append((family_, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                         (address, port) if ip.version == 4 else (address, port, 0, 0)))
        return rows

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names, asked


def run(package: Path, capsys, *extra: str) -> tuple[int, str]:
    rc = main(["run", str(package), "--backend", "fake", "--no-store", "--no-report", "-q", "--lang", "en",
               "--fetch-remote", *extra], registry=registry(lambda item: "fox"))
    return rc, capsys.readouterr().err


def cache_files(package: Path) -> list[str]:
    cache = package / ".deepfaune_cache"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# ---------------------------------------------------------------- addresses refused before any connection

def test_loopback_is_refused_by_default_and_said_once_for_the_host(tmp_path: Path, server: Server, loopback_only,
                                                                   capsys):
    server.routes["/a.jpg"] = send(jpeg_bytes(tmp_path))
    host = server.url.removeprefix("http://")
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        remote_row(f"r{k}", f"{server.url}/a.jpg", seconds=3000 + 100 * k) for k in range(3)])
    rc, err = run(package, capsys)
    said = [line for line in err.splitlines() if "refused, nothing sent" in line]
    assert said == [f"warning: {host}: 3 remote media not fetched: 127.0.0.1 is a loopback address: refused, nothing "
                    f"sent (to fetch from your own network: --fetch-allow-private); skipped: {server.url}/a.jpg, "
                    f"{server.url}/a.jpg, {server.url}/a.jpg"]
    assert "remote media: 0 of 3 ready (0 already in the cache), 3 skipped" in err
    assert server.asked == [] and loopback_only == [] and cache_files(package) == []
    assert not {"r0", "r1", "r2"} & ours(package)

    rc, err = run(package, capsys, "--fetch-allow-private")  # a lab's own server: its explicit choice
    assert rc == 0 and {"r0", "r1", "r2"} <= ours(package) and server.asked == ["/a.jpg"] * 3


@pytest.mark.parametrize("url, said", [
    ("http://169.254.169.254/latest/meta-data/iam.jpg", "169.254.169.254 is a link-local address"),
    ("http://10.1.2.3/a.jpg", "10.1.2.3 is a private address"),
    ("http://192.168.0.10:8080/a.jpg", "192.168.0.10 is a private address"),
    ("http://[::1]:8080/a.jpg", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]/a.jpg", "::ffff:127.0.0.1 is a loopback address"),
    ("http://[::ffff:a9fe:a9fe]/a.jpg", "::ffff:a9fe:a9fe is a link-local address"),
    ("http://0.0.0.0:8080/a.jpg", "0.0.0.0 is a unspecified address"),
    ("https://localhost/a.jpg", "localhost resolves to "),
])
def test_each_kind_of_address_is_refused_before_any_connection(tmp_path: Path, loopback_only, capsys, url, said):
    package = make_package(tmp_path / "pkg", extra_media_rows=[remote_row("r1", url)])
    rc, err = run(package, capsys)
    assert f"{said}" in err and "refused, nothing sent" in err, err
    assert loopback_only == [] and cache_files(package) == [] and "r1" not in ours(package)


def test_link_local_stays_refused_with_the_intranet_option(tmp_path: Path, loopback_only, capsys):
    package = make_package(tmp_path / "pkg", extra_media_rows=[
        remote_row("r1", "http://169.254.169.254/latest/meta-data/x.jpg")])
    rc, err = run(package, capsys, "--fetch-allow-private")
    assert ("169.254.169.254 remote media not fetched" not in err
            and "1 remote media not fetched: 169.254.169.254 is a link-local address: refused, nothing sent; skipped"
            in err), err
    assert loopback_only == []


def test_every_address_a_name_resolves_to_is_checked(tmp_path: Path, server: Server, loopback_only, resolver,
                                                     capsys):
    names, _ = resolver
    names["cams.example.org"] = [PUBLIC_IP, "10.0.0.7"]  # one private address among public ones
    package = make_package(tmp_path / "pkg", extra_media_rows=[remote_row("r1", "http://cams.example.org/a.jpg")])
    rc, err = run(package, capsys)
    assert "cams.example.org resolves to 10.0.0.7, a private address: refused, nothing sent" in err
    assert loopback_only == [] and server.asked == []


def test_the_connection_goes_to_the_address_checked_no_second_lookup(tmp_path: Path, server: Server, loopback_only,
                                                                     resolver, capsys):
    """DNS rebinding: a name that is public when checked and 127.0.0.1 when connecting must not reach 127.0.0.1."""
    names, asked = resolver
    body = jpeg_bytes(tmp_path)
    server.routes["/a.jpg"] = send(body, length=len(body))
    names["cams.example.org"] = [PUBLIC_IP]
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        rows = real(host, *args, **kwargs)
        names["cams.example.org"] = ["127.0.0.1"]  # every later lookup answers loopback
        return rows

    socket.getaddrinfo = rebinding  # monkeypatch (resolver) restores the real one
    package = make_package(tmp_path / "pkg", extra_media_rows=[remote_row("r1", "http://cams.example.org/a.jpg")])
    rc, err = run(package, capsys)
    assert rc == 0, err
    assert asked == ["cams.example.org"] and loopback_only == [PUBLIC_IP] and "r1" in ours(package)


def test_a_redirect_to_loopback_is_refused(tmp_path: Path, server: Server, loopback_only, resolver, capsys):
    names, _ = resolver
    names["cams.example.org"] = [PUBLIC_IP]

    def redirect(req):
        req.send_response(302)
        req.send_header("Location", f"{server.url}/secret.jpg")
        req.send_header("Content-Length", "0")
        req.end_headers()

    server.routes["/a.jpg"] = redirect
    server.routes["/secret.jpg"] = send(jpeg_bytes(tmp_path))
    package = make_package(tmp_path / "pkg", extra_media_rows=[remote_row("r1", "http://cams.example.org/a.jpg")])
    rc, err = run(package, capsys)
    assert ("warning: http://cams.example.org/a.jpg: download failed (127.0.0.1 is a loopback address: refused, "
            "nothing sent (to fetch from your own network: --fetch-allow-private)); skipped") in err
    assert server.asked == ["/a.jpg"] and loopback_only == [PUBLIC_IP] and cache_files(package) == []


# ---------------------------------------------------------------- answers that are not media are never kept

def typed(body: bytes, content_type: str):
    def route(req):
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    return route


def test_an_answer_that_is_not_a_media_file_is_not_kept(tmp_path: Path, server: Server, loopback_only, capsys):
    good = jpeg_bytes(tmp_path)
    page = b"<!DOCTYPE html><html><body>Please sign in</body></html>" * 10
    server.routes["/login.jpg"] = typed(page, "text/html; charset=utf-8")
    server.routes["/page.jpg"] = typed(page, "image/jpeg")  # a lying Content-Type: the bytes tell
    server.routes["/short.jpg"] = typed(b'{"error": 1}', "application/octet-stream")  # shorter than any check
    server.routes["/json.jpg"] = typed(b'{"error": 1}', "application/json")
    server.routes["/ok.jpg"] = typed(good, "application/octet-stream")
    rows = [remote_row(name, f"{server.url}/{name}.jpg", seconds=3000 + 100 * k)
            for k, name in enumerate(("login", "page", "short", "json", "ok"))]
    package = make_package(tmp_path / "pkg", extra_media_rows=rows)
    rc, err = run(package, capsys, "--fetch-allow-private")
    assert f"{server.url}/login.jpg: download failed (text/html answer, not an image or video); skipped" in err
    assert f"{server.url}/page.jpg: download failed (not an image or video (its first bytes are b'<!DOCTYP'))" in err
    assert f"{server.url}/short.jpg: download failed (not an image or video (its first bytes are b'{{\"error\"'))" in err
    assert f"{server.url}/json.jpg: download failed (application/json answer, not an image or video)" in err
    assert cache_files(package) == ["ok.jpg", "ok.jpg.source.json"]
    assert ours(package) & {"login", "page", "short", "json", "ok"} == {"ok"}


def test_a_cached_file_that_is_not_a_media_file_is_not_used(tmp_path: Path, server: Server, loopback_only, capsys):
    """A cache filled before answers were checked: its note matches, but the file is an HTML page."""
    page = b"<html>Please sign in</html>"
    server.routes["/a.jpg"] = typed(page, "text/html")
    package = make_package(tmp_path / "pkg", extra_media_rows=[remote_row("r1", f"{server.url}/a.jpg")])
    cache = package / ".deepfaune_cache"
    cache.mkdir()
    (cache / "r1.jpg").write_bytes(page)
    (cache / "r1.jpg.source.json").write_text(json.dumps({"url": f"{server.url}/a.jpg", "bytes": len(page)}))
    rc, err = run(package, capsys, "--fetch-allow-private")
    assert f"{server.url}/a.jpg: download failed (text/html answer, not an image or video); skipped" in err
    assert server.asked == ["/a.jpg"] and "r1" not in ours(package)


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("100.64.0.1", "non-public"), ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"), ("240.0.0.1", "reserved"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("8.8.8.8", None), ("::ffff:8.8.8.8", None), ("2606:4700::1111", None),
])
def test_what_kind_of_address_each_is(address, kind):
    from deepfaune_plugin.hooks.camtrapdp.safe_http import address_kind, refused_kind

    ip = ipaddress.ip_address(address)
    assert address_kind(ip) == kind
    assert refused_kind(ip, allow_private=False) == kind
    assert refused_kind(ip, allow_private=True) == (kind if kind in ("link-local", "multicast", "unspecified")
                                                     else None)
