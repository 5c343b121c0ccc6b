"""Tests of course_lib.data.download against a local HTTP server (127.0.0.1, in a thread) that
honours Range requests and can cut a transfer short, and against hostile archives built here.

Oracles: hashlib's SHA-256 of the served bytes, the server's own log of what it sent, and
the archive members we wrote.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from course_lib.data import download as dl

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes, crosses the 1 MiB chunk


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        server.log.append((self.path, rng))
        if rng and server.honour_range:
            start = int(rng.split("=")[1].split("-")[0]) - server.range_slip
            if start >= len(data):
                self.send_response(416)
                if not server.bare_416:  # a careful server says how large the file is
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if server.chunked:  # HTTP/1.1 chunked framing: the closing chunk proves the end
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            server.sent += len(body)   # counted before writing: see the last branch
            for i in range(0, len(body), 100_000):
                piece = body[i:i + 100_000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if server.no_length is not None:  # no size announced; the end is the connection closing
            self.send_header("Connection", "close")
            self.end_headers()
            server.sent += min(len(body), server.no_length)
            self.wfile.write(body[:server.no_length])
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:  # announce everything, send part, hang up
            self.wfile.write(body[: server.cut_after])
            self.wfile.flush()
            server.cut_after = None
            self.close_connection = True
            return
        # Counted before writing: the client may read the last byte and the test check
        # `sent` before this thread runs again, so a count after the write can lag behind.
        server.sent += len(body)
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"/data.bin": PAYLOAD}
    httpd.log, httpd.sent, httpd.cut_after, httpd.honour_range = [], 0, None, True
    httpd.bare_416, httpd.chunked, httpd.no_length, httpd.range_slip = False, False, None, 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_verified(server, tmp_path):
    dest = dl.download(server.url + "/data.bin", tmp_path / "data.bin", sha256=SHA.upper(),
                       progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
    # already there and matching: no second request
    dl.download(server.url + "/data.bin", dest, sha256=SHA, progress=False)
    assert len(server.log) == 1


def test_interrupted_then_resumed(server, tmp_path):
    server.cut_after = 300_000
    dest = tmp_path / "data.bin"
    with pytest.raises(dl.DownloadError, match="resume"):
        dl.download(server.url + "/data.bin", dest, sha256=SHA, progress=False)
    part = tmp_path / "data.bin.part"
    assert part.stat().st_size == 300_000 and not dest.exists()
    dl.download(server.url + "/data.bin", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log[-1] == ("/data.bin", "bytes=300000-")
    assert server.sent == len(PAYLOAD) - 300_000  # only the rest was sent again


def test_server_ignoring_range_restarts(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)  # junk from some older attempt
    server.honour_range = False
    dest = dl.download(server.url + "/data.bin", tmp_path / "data.bin", sha256=SHA,
                       progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_checksum_deletes_and_explains(server, tmp_path):
    with pytest.raises(dl.ChecksumError, match="expected 0000") as info:
        dl.download(server.url + "/data.bin", tmp_path / "data.bin", sha256="0" * 64,
                    progress=False)
    assert SHA in str(info.value)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_http_error_is_clear(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(server.url + "/missing.zip", tmp_path / "m.zip", progress=False)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_fetch_trust_on_first_use(server, tmp_path):
    server.files["/set.zip"] = _zip_bytes({"a/images/a.png": b"png", "a/masks/m.png": b"m"})
    sources = {"toy": (dl.Source(server.url + "/set.zip", "set.zip", "toy/stage1_train"),)}
    out = dl.fetch("toy", root=tmp_path, progress=False, sources=sources)
    assert (out[0] / "a" / "images" / "a.png").read_bytes() == b"png"
    book = json.loads((tmp_path / "downloads" / "checksums.json").read_text())
    assert book["set.zip"] == hashlib.sha256(server.files["/set.zip"]).hexdigest()
    assert dl.read_marker(out[0])["archive"] == "set.zip"  # written last, inside the folder
    # complete and marked: a second fetch neither downloads nor extracts
    n_requests = len(server.log)
    assert dl.fetch("toy", root=tmp_path, progress=False, sources=sources) == out
    assert len(server.log) == n_requests
    # the provider's file changes: the recorded checksum catches it on the next download
    (tmp_path / "downloads" / "set.zip").unlink()
    import shutil

    shutil.rmtree(out[0])
    server.files["/set.zip"] = _zip_bytes({"a/images/a.png": b"evil"})
    with pytest.raises(dl.ChecksumError):
        dl.fetch("toy", root=tmp_path, progress=False, sources=sources)


# --- archives ------------------------------------------------------------------------------

def _tar(path, add):
    with tarfile.open(path, "w") as tf:
        add(tf)
    return path


def _add_file(tf, name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_extract_good_zip_and_tar(tmp_path):
    z = tmp_path / "ok.zip"
    z.write_bytes(_zip_bytes({"d/f.txt": b"hello", "d/sub/g.txt": b"g"}))
    dl.extract(z, tmp_path / "outz")
    assert (tmp_path / "outz" / "d" / "sub" / "g.txt").read_bytes() == b"g"
    t = _tar(tmp_path / "ok.tar", lambda tf: _add_file(tf, "VOCdevkit/VOC2012/x.txt", b"v"))
    dl.extract(t, tmp_path / "outt")
    assert (tmp_path / "outt" / "VOCdevkit" / "VOC2012" / "x.txt").read_bytes() == b"v"


@pytest.mark.parametrize("name, reason", [
    ("../escape.txt", "'..'"),
    ("ok/../../escape.txt", "'..'"),
    ("/etc/passwd_copy", "absolute"),
])
def test_hostile_paths_refused(tmp_path, name, reason):
    for kind in ("zip", "tar"):
        archive = tmp_path / f"bad.{kind}"
        if kind == "zip":
            archive.write_bytes(_zip_bytes({"fine.txt": b"1", name: b"2"}))
        else:
            def add(tf, name=name):
                _add_file(tf, "fine.txt")
                _add_file(tf, name)
            _tar(archive, add)
        target = tmp_path / f"out_{kind}"
        with pytest.raises(dl.UnsafeArchiveError, match=reason) as info:
            dl.extract(archive, target)
        assert name in str(info.value)
        assert not (target / "fine.txt").exists(), "nothing is extracted from a hostile archive"
    assert not (tmp_path / "escape.txt").exists()


def test_links_refused(tmp_path):
    def symlink(tf):
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)

    def hardlink(tf):
        _add_file(tf, "a.txt")
        info = tarfile.TarInfo("b.txt")
        info.type, info.linkname = tarfile.LNKTYPE, "a.txt"
        tf.addfile(info)

    with pytest.raises(dl.UnsafeArchiveError, match="symbolic link"):
        dl.extract(_tar(tmp_path / "s.tar", symlink), tmp_path / "o1")
    with pytest.raises(dl.UnsafeArchiveError, match="hard link"):
        dl.extract(_tar(tmp_path / "h.tar", hardlink), tmp_path / "o2")
    # a zip member marked as a symlink in its Unix mode bits
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("zlink")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    (tmp_path / "l.zip").write_bytes(buf.getvalue())
    with pytest.raises(dl.UnsafeArchiveError, match="symbolic link"):
        dl.extract(tmp_path / "l.zip", tmp_path / "o3")


def test_not_an_archive(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        dl.extract(tmp_path / "x.bin", tmp_path / "o")


def test_sources_table_is_well_formed():
    for name, sources in dl.SOURCES.items():
        for src in sources:
            assert src.url.startswith(("http://", "https://")) and src.url.endswith(src.filename)
            assert src.sha256 is None or len(src.sha256) == 64, name


def test_cli_rejects_malformed_checksum(capsys):
    with pytest.raises(SystemExit):
        dl.main(["dsb2018", "--sha256", "stage1_train.zip"])
    assert "FILE=HEX" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dl.main(["imagenet"])


def test_complete_part_file_is_finished_not_refetched(server, tmp_path):
    # an earlier run received every byte but stopped before renaming: the server answers the
    # Range request with 416 (nothing left), and the .part is verified and renamed
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    dest = dl.download(server.url + "/data.bin", tmp_path / "data.bin", sha256=SHA,
                       progress=False)
    assert dest.read_bytes() == PAYLOAD and server.sent == 0
    assert server.log == [("/data.bin", f"bytes={len(PAYLOAD)}-")]


# --- completeness, trust on first use, all-or-nothing extraction, archive bombs -------------

def test_transfer_without_length_cannot_pass_a_short_file(server, tmp_path):
    # the server announces no size and hangs up after 300 000 bytes: nothing tells this
    # transfer from a complete one, so without a checksum it is refused and not renamed
    server.no_length = 300_000
    dest = tmp_path / "data.bin"
    with pytest.raises(dl.DownloadError, match="did not say how large"):
        dl.download(server.url + "/data.bin", dest, progress=False)
    assert not dest.exists() and (tmp_path / "data.bin.part").stat().st_size == 300_000
    # with the published checksum the same short file is caught and deleted ...
    (tmp_path / "data.bin.part").unlink()
    with pytest.raises(dl.ChecksumError):
        dl.download(server.url + "/data.bin", dest, sha256=SHA, progress=False)
    # ... and a whole one accepted
    server.no_length = len(PAYLOAD)
    assert dl.download(server.url + "/data.bin", dest, sha256=SHA,
                       progress=False).read_bytes() == PAYLOAD


def test_chunked_transfer_is_complete_by_its_framing(server, tmp_path):
    _Handler.protocol_version = "HTTP/1.1"
    try:
        server.chunked = True
        dest = dl.download(server.url + "/data.bin", tmp_path / "data.bin", progress=False)
    finally:
        _Handler.protocol_version = "HTTP/1.0"
    assert dest.read_bytes() == PAYLOAD


def test_416_without_size_is_not_taken_as_complete(server, tmp_path):
    # half the file in .part, and a server that answers 416 without Content-Range
    # (e.g. the file shrank at the source): the half file must not become the download
    part = tmp_path / "data.bin.part"
    part.write_bytes(PAYLOAD[:1000])
    server.files["/data.bin"] = PAYLOAD[:1000]
    server.bare_416 = True
    dest = tmp_path / "data.bin"
    with pytest.raises(dl.DownloadError, match="416 without its size"):
        dl.download(server.url + "/data.bin", dest, progress=False)
    assert not dest.exists()
    # a 416 whose total is smaller than the .part: the .part is junk, start over
    server.bare_416 = False
    part.write_bytes(PAYLOAD[:5000])
    assert dl.download(server.url + "/data.bin", dest,
                       progress=False).read_bytes() == PAYLOAD[:1000]


def test_first_use_records_no_checksum_for_an_archive_that_does_not_list(server, tmp_path):
    # the source serves a truncated zip (complete as a transfer: its length is announced):
    # it cannot be listed, so its checksum must not become the trusted reference
    good = _zip_bytes({"a/images/a.png": b"png" * 1000, "a/masks/m.png": b"m" * 1000})
    server.files["/set.zip"] = good[: len(good) // 2]
    sources = {"toy": (dl.Source(server.url + "/set.zip", "set.zip", "toy/stage1_train"),)}
    with pytest.raises(ValueError, match="cannot be listed|neither a zip"):
        dl.fetch("toy", root=tmp_path, progress=False, sources=sources)
    assert not (tmp_path / "downloads" / "checksums.json").exists()
    assert not (tmp_path / "toy" / "stage1_train").exists()


def test_failed_extraction_leaves_no_folder_and_no_marker(tmp_path, monkeypatch):
    z = tmp_path / "ok.zip"
    z.write_bytes(_zip_bytes({"d/f.txt": b"hello", "d/g.txt": b"g"}))
    calls = []

    def copy_then_fail(src, dst, budget, archive, member):
        calls.append(member)
        if len(calls) == 2:
            raise OSError("disk full")
        dst.write(src.read())

    monkeypatch.setattr(dl, "_copy_limited", copy_then_fail)
    target = tmp_path / "data" / "set"
    with pytest.raises(OSError, match="disk full"):
        dl.extract(z, target)
    assert not target.exists()  # never half there
    assert list((tmp_path / "data").iterdir()) == []  # the temporary sibling is gone too


def test_extract_into_an_existing_root_marks_the_dataset_folder(tmp_path):
    # VOC's tar unpacks VOCdevkit/VOC2012 into the data root, which already holds other data
    root = tmp_path / "data"
    (root / "dsb2018").mkdir(parents=True)
    tar = _tar(tmp_path / "voc.tar", lambda tf: _add_file(tf, "VOCdevkit/VOC2012/x.txt"))
    dl.extract(tar, root, dataset_dir="VOCdevkit/VOC2012")
    assert (root / "VOCdevkit" / "VOC2012" / "x.txt").read_bytes() == b"x"
    assert dl.is_complete(root / "VOCdevkit" / "VOC2012") and not dl.is_complete(root)
    assert sorted(p.name for p in root.iterdir()) == ["VOCdevkit", "dsb2018"]  # no leftovers
    # the archive lacks the folder the dataset needs: refused, nothing moved into the root
    other = _tar(tmp_path / "other.tar", lambda tf: _add_file(tf, "elsewhere/y.txt"))
    with pytest.raises(ValueError, match="expected folder"):
        dl.extract(other, root, dataset_dir="VOCdevkit/VOC2012")
    assert not (root / "elsewhere").exists()


def test_archive_bomb_limits(tmp_path):
    # 3 members of 1000 bytes: 3000 bytes in all
    z = tmp_path / "bomb.zip"
    z.write_bytes(_zip_bytes({f"f{i}": b"\0" * 1000 for i in range(3)}))
    assert len(dl.check_archive(z, tmp_path / "out", max_bytes=3000, max_members=3)) == 3
    with pytest.raises(dl.UnsafeArchiveError, match="more than 2999 bytes"):
        dl.check_archive(z, tmp_path / "out", max_bytes=2999)
    with pytest.raises(dl.UnsafeArchiveError, match="more than 2 members"):
        dl.extract(z, tmp_path / "out", max_members=2)
    assert not (tmp_path / "out").exists()
    t = _tar(tmp_path / "bomb.tar", lambda tf: [_add_file(tf, f"f{i}", b"y" * 600)
                                               for i in range(2)])
    with pytest.raises(dl.UnsafeArchiveError, match="more than 1000 bytes"):
        dl.check_archive(t, tmp_path / "out", max_bytes=1000)
    # the byte budget also holds while writing, should a header understate a member's size
    budget = [5]
    with pytest.raises(dl.UnsafeArchiveError, match="more bytes"):
        dl._copy_limited(io.BytesIO(b"123456"), io.BytesIO(), budget, Path("a.zip"), "m")


def test_a_different_range_than_asked_is_refused(server, tmp_path):
    # asked from byte 1000, the server sends from 900: appending would corrupt the file
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    server.range_slip = 100
    with pytest.raises(dl.DownloadError, match="another byte range"):
        dl.download(server.url + "/data.bin", tmp_path / "data.bin", progress=False)
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD[:1000]  # nothing appended
    assert not (tmp_path / "data.bin").exists()
