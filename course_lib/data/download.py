"""Download the real datasets: resumable, SHA-256 verified, safely extracted.

Taught in notebooks/01_data_tour (the course itself never needs the network).

``python -m course_lib.data.download dsb2018 voc2012`` fetches into ``config.data_root()``:

* ``dsb2018``: BBBC038 (the 2018 Data Science Bowl images): ``stage1_train.zip`` extracted to
  ``dsb2018/stage1_train``, ``stage1_test.zip`` to ``dsb2018/stage1_test``, and the stage-1
  solution ``stage1_solution.csv`` (run-length encoded test masks) to ``dsb2018/``.
* ``voc2012``: ``VOCtrainval_11-May-2012.tar`` extracted to ``VOCdevkit/VOC2012``.

About the checksums, honestly: the authors of this module could not fetch the files while
writing it, so :data:`SOURCES` carries **no SHA-256 it could vouch for** (``sha256=None``).
Verification therefore works on trust-on-first-use: a checksum given with ``--sha256`` (or
``expected_sha256=``) is enforced; otherwise the checksum of the first complete download is
recorded in ``data_root()/downloads/checksums.json`` and every later download or re-check of
that file must match it. Compare the recorded value with the one the provider publishes
when you can (VOC publishes MD5 sums only).

Downloads go to ``<file>.part`` first and resume with an HTTP ``Range`` request after an
interruption; the file gets its final name only once it is known to be complete and verified.
*Complete* needs proof: the size the server announced (``Content-Length`` or the total of a
``Content-Range``) reached, or a chunked transfer that ended with its closing chunk, or the
expected SHA-256. A server that sends neither a size nor chunks, or answers ``416`` without
saying the total, cannot prove a short file short, so such a transfer is refused unless a
checksum was given (``--sha256``).

A checksum is recorded on first use only after the file is complete *and*, for an archive,
after the archive opened and listed every member (a truncated zip has no central directory, a
truncated tar ends early), so a broken or hostile first download can never become the trusted
reference.

Extraction checks every member before writing anything and refuses absolute paths, ``..``
escapes, links (symbolic or hard), device files, and archives that would unpack to more than
:data:`MAX_ARCHIVE_BYTES` or hold more than :data:`MAX_ARCHIVE_MEMBERS` members (archive bombs);
the bytes actually written are counted too, in case the archive's headers lie. It unpacks into
a temporary sibling folder, writes the completion marker (:data:`COMPLETE_MARKER`) into the
dataset folder last, and renames it into place only then: a dataset folder the downloader made
is either complete and marked or not there at all, and :func:`fetch` treats a marked folder as
done.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from course_lib.data.marker import COMPLETE_MARKER, is_complete, read_marker, write_marker

__all__ = ["download", "fetch", "extract", "check_archive", "sha256_of", "main", "Source",
           "SOURCES", "DownloadError", "ChecksumError", "UnsafeArchiveError", "COMPLETE_MARKER",
           "is_complete", "read_marker", "write_marker", "MAX_ARCHIVE_BYTES",
           "MAX_ARCHIVE_MEMBERS"]

CHUNK = 1 << 20

#: Archive-bomb guards: most bytes and members an archive may unpack to (VOC 2012 trainval is
#: about 2 GB in 35 k files; BBBC038 stage 1 train about 0.1 GB in 31 k files).
MAX_ARCHIVE_BYTES = 16 << 30
MAX_ARCHIVE_MEMBERS = 250_000



class DownloadError(RuntimeError):
    """The transfer failed or stopped early; the ``.part`` file is kept for resuming.

    Taught in notebooks/01_data_tour.
    """


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 differs from the expected one.

    Taught in notebooks/01_data_tour.
    """


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the target folder, or is a link or device, or the
    archive would unpack to more than the size limits allow.

    Taught in notebooks/01_data_tour.
    """


@dataclass(frozen=True)
class Source:
    """One downloadable file: where from, what to call it, where to extract it (relative to
    the data root; ``None`` = keep the file as it is), its SHA-256 when known, and the dataset
    folder inside the extraction that receives the completion marker (``None`` = the
    ``extract_to`` folder itself; VOC unpacks ``VOCdevkit/VOC2012`` into the root).

    Taught in notebooks/01_data_tour.
    """

    url: str
    filename: str
    extract_to: str | None
    sha256: str | None = None
    dataset_dir: str | None = None


#: Known sources. ``sha256=None``: not known to the authors, see the module docstring.
SOURCES: dict[str, tuple[Source, ...]] = {
    "dsb2018": (
        Source("https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip",
               "stage1_train.zip", "dsb2018/stage1_train"),
        Source("https://data.broadinstitute.org/bbbc/BBBC038/stage1_test.zip",
               "stage1_test.zip", "dsb2018/stage1_test"),
        Source("https://data.broadinstitute.org/bbbc/BBBC038/stage1_solution.csv",
               "stage1_solution.csv", None),
    ),
    "voc2012": (
        Source("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
               "VOCtrainval_11-May-2012.tar", ".", dataset_dir="VOCdevkit/VOC2012"),
    ),
}


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Taught in notebooks/01_data_tour.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "course-lib-downloader"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _total_from_content_range(value: str | None) -> int | None:
    """The total size of ``Content-Range: bytes a-b/TOTAL`` (or ``bytes */TOTAL``)."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _start_from_content_range(value: str | None) -> int | None:
    """The first byte ``a`` of ``Content-Range: bytes a-b/TOTAL``."""
    try:
        return int(value.split()[1].split("-")[0]) if value else None
    except (IndexError, ValueError):
        return None


def download(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial transfer, and verify it.

    Args:
        url: http(s) address.
        dest: final file path; the transfer is written to ``dest + ".part"``.
        sha256: expected hex digest (case-insensitive), or ``None`` to skip verification here.
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the server.

    A ``dest`` that already exists and matches ``sha256`` is not downloaded again (without a
    checksum, an existing ``dest`` is returned as it is: it only gets its name once complete).
    Completeness without a checksum needs the size from the server (``Content-Length`` or a
    ``Content-Range`` total) or a chunked transfer; see the module docstring.

    Raises:
        DownloadError: network failure, early end, or a transfer whose completeness cannot be
            proven without ``sha256``; run again to resume from the ``.part``.
        ChecksumError: the complete file does not match ``sha256``; the bad file is deleted.

    Taught in notebooks/01_data_tour.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if sha256 is None or sha256_of(dest) == sha256.lower():
            return dest
        dest.unlink()  # a stale or damaged copy: fetch again
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    unproven = (f"The server did not say how large {url} is, so a transfer cut short cannot be "
                f"told from a complete one; {part} is kept. Pass the published checksum "
                "(--sha256 FILE=HEX, or sha256=) to accept it, or try another mirror.")
    complete = False  # proven complete by size or by chunked framing
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # "range not satisfiable": nothing after byte `start`
            total = _total_from_content_range(err.headers.get("Content-Range"))
            if total is not None and total == start:
                complete, response = True, None
            elif total is not None and total < start:  # longer than the file: junk, restart
                part.unlink()
                return download(url, dest, sha256, progress, timeout)
            elif sha256 is not None:
                response = None  # the checksum below decides
            else:
                raise DownloadError(f"{url} answered 416 without its size. {unproven}") from err
        else:
            raise DownloadError(f"Downloading {url} failed: HTTP {err.code} {err.reason}. "
                                "Check the address or try again later.") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"Could not reach {url}: {err}. Check the network (or a proxy) "
                            f"and run again; {part} is kept for resuming.") from err
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            headers = response.headers
            if status == 206 and _start_from_content_range(headers.get("Content-Range")) != start:
                raise DownloadError(
                    f"{url} answered with another byte range than asked for (from {start}: "
                    f"{headers.get('Content-Range')!r}); nothing was written. Delete {part} and "
                    "download again.")
            if start and status != 206:
                start = 0  # server ignored Range: start over
            length = headers.get("Content-Length")
            total = _total_from_content_range(headers.get("Content-Range")) if status == 206 \
                else None
            if total is None and length is not None:
                total = start + int(length)
            chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
            mode = "ab" if start else "wb"
            received = start
            with open(part, mode) as f, tqdm(total=total, initial=start, unit="B",
                                             unit_scale=True, desc=dest.name,
                                             disable=not progress) as bar:
                try:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        f.write(block)
                        received += len(block)
                        bar.update(len(block))
                except (http.client.IncompleteRead, OSError) as err:
                    raise DownloadError(
                        f"Transfer of {url} stopped after {received} bytes ({err}); run the "
                        f"same download again to resume from {part}.") from err
            if total is not None and received != total:
                if received > total:
                    part.unlink()
                    raise DownloadError(f"{url} sent {received} bytes but announced {total}; "
                                        "the partial file was deleted, run again.")
                raise DownloadError(
                    f"Transfer of {url} ended after {received} of {total} bytes; run the same "
                    f"download again to resume from {part}.")
            # http.client raises IncompleteRead when a chunked body lacks its closing chunk
            complete = total is not None or chunked
    if not complete and sha256 is None:
        raise DownloadError(unproven)
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256.lower():
            part.unlink()
            raise ChecksumError(
                f"{dest.name}: SHA-256 is {got}, expected {sha256.lower()}. The file was "
                "damaged or changed at the source and has been deleted; download again, or, if "
                "the provider published a new file, update the expected checksum.")
    os.replace(part, dest)
    return dest


def _member_problem(name: str, target: Path) -> str | None:
    """Why ``name`` may not be extracted into ``target`` (``None`` when it is safe)."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (posix.parts and posix.parts[0].endswith(":")):
        return "has an absolute path"
    if ".." in posix.parts:
        return "climbs out of the target folder with '..'"
    resolved = (target / posix).resolve()
    if resolved != target and target not in resolved.parents:
        return "would land outside the target folder"
    return None


def check_archive(archive: str | Path, target: str | Path,
                  max_bytes: int | None = None, max_members: int | None = None) -> list[str]:
    """Names of the members of a zip or tar ``archive``, after checking they are all safe to
    extract into ``target``.

    Args:
        archive: the zip or tar file.
        target: the folder it is meant for (paths are checked against it).
        max_bytes: most uncompressed bytes in all (default :data:`MAX_ARCHIVE_BYTES`).
        max_members: most members (default :data:`MAX_ARCHIVE_MEMBERS`).

    Raises:
        UnsafeArchiveError: names the first member with an absolute path, a ``..`` escape, or
            that is a symbolic link, hard link or device/FIFO; or says which size limit the
            archive exceeds (an archive bomb, or a limit to raise for a bigger honest set).
        ValueError: ``archive`` is neither zip nor tar, or cannot be listed (truncated).

    Taught in notebooks/01_data_tour.
    """
    archive, target = Path(archive), Path(target).resolve()
    max_bytes = MAX_ARCHIVE_BYTES if max_bytes is None else int(max_bytes)
    max_members = MAX_ARCHIVE_MEMBERS if max_members is None else int(max_members)
    names: list[str] = []
    total = 0

    def count(name: str, size: int) -> None:
        nonlocal total
        names.append(name)
        total += max(0, int(size))
        if len(names) > max_members:
            raise UnsafeArchiveError(
                f"Refusing to extract {archive}: more than {max_members} members (an archive "
                "bomb, or a bigger dataset than expected: pass max_members= to allow it). "
                "Nothing was extracted.")
        if total > max_bytes:
            raise UnsafeArchiveError(
                f"Refusing to extract {archive}: its members unpack to more than {max_bytes} "
                "bytes (an archive bomb, or a bigger dataset than expected: pass max_bytes= to "
                "allow it). Nothing was extracted.")

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    problem = _member_problem(info.filename, target)
                    mode = info.external_attr >> 16
                    if problem is None and stat.S_ISLNK(mode):
                        problem = "is a symbolic link"
                    if problem:
                        raise UnsafeArchiveError(_refusal(archive, info.filename, problem))
                    count(info.filename, info.file_size)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf:
                    problem = _member_problem(member.name, target)
                    if problem is None and member.issym():
                        problem = "is a symbolic link"
                    elif problem is None and member.islnk():
                        problem = "is a hard link"
                    elif problem is None and not (member.isfile() or member.isdir()):
                        problem = "is a device or FIFO"
                    if problem:
                        raise UnsafeArchiveError(_refusal(archive, member.name, problem))
                    count(member.name, member.size)
        else:
            raise ValueError(f"{archive} is neither a zip nor a tar archive; delete it and "
                             "download again.")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise ValueError(f"{archive} cannot be listed ({err}): it is truncated or damaged. "
                         "Delete it and download it again.") from err
    return names


def _refusal(archive: Path, member: str, problem: str) -> str:
    return (f"Refusing to extract {archive}: member {member!r} {problem}. The archive is "
            "damaged or hostile; nothing was extracted. Delete it and download it again from "
            "the official source.")


def _copy_limited(src, dst, budget: list[int], archive: Path, member: str) -> None:
    """Copy ``src`` to ``dst`` while ``budget[0]`` bytes remain (headers may understate)."""
    for block in iter(lambda: src.read(CHUNK), b""):
        budget[0] -= len(block)
        if budget[0] < 0:
            raise UnsafeArchiveError(
                f"Refusing to extract {archive}: member {member!r} unpacks to more bytes than "
                "the archive declares or the limit allows (an archive bomb). The partial "
                "extraction was removed.")
        dst.write(block)


def _unpack(archive: Path, root: Path, max_bytes: int) -> None:
    """Write every member of a checked archive below ``root`` (bytes counted against
    ``max_bytes``)."""
    budget = [max_bytes]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                out = root / PurePosixPath(info.filename.replace("\\", "/"))
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    _copy_limited(src, dst, budget, archive, info.filename)
    else:
        with tarfile.open(archive) as tf:
            for member in tf:
                out = root / PurePosixPath(member.name)
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                with src, open(out, "wb") as dst:
                    _copy_limited(src, dst, budget, archive, member.name)


def extract(archive: str | Path, target: str | Path, dataset_dir: str | None = None,
            max_bytes: int | None = None, max_members: int | None = None) -> Path:
    """Extract a zip or tar archive into ``target``, all or nothing.

    Every member is checked first (:func:`check_archive`: paths, links, size limits), so a
    hostile archive writes nothing. The members go to a temporary sibling folder
    (``.<name>.partial-<pid>``), the completion marker is written into the dataset folder
    (``target/dataset_dir``, default ``target`` itself) last, and only then is the result
    renamed into place: ``target`` itself when it does not exist, else each top-level entry
    into ``target`` (e.g. ``VOCdevkit`` into the data root), refusing to overwrite an
    existing one. A failure removes the temporary folder. Returns ``target``.

    Taught in notebooks/01_data_tour.
    """
    archive, target = Path(archive), Path(target)
    max_bytes = MAX_ARCHIVE_BYTES if max_bytes is None else int(max_bytes)
    target.parent.mkdir(parents=True, exist_ok=True)
    check_archive(archive, target, max_bytes, max_members)
    # a sibling when the folder is new (renamed whole), else inside it (entries moved up)
    tmp = target / f".extract.partial-{os.getpid()}" if target.exists() else \
        target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _unpack(archive, tmp.resolve(), max_bytes)
        marked = tmp / dataset_dir if dataset_dir else tmp
        if not marked.is_dir():
            raise ValueError(f"{archive} does not contain the expected folder {dataset_dir}; "
                             "it is not the archive this dataset needs.")
        write_marker(marked, archive=archive.name, sha256=sha256_of(archive))
        if not target.exists():
            os.replace(tmp, target)
            return target
        for entry in sorted(tmp.iterdir()):
            dest = target / entry.name
            if dest.exists():
                raise FileExistsError(
                    f"{dest} already exists and is not a complete download; move it away (or "
                    "delete it) and run the download again.")
        # the marker (when it sits at the top) moves last, so it still comes after the data
        for entry in sorted(tmp.iterdir(), key=lambda e: e.name == COMPLETE_MARKER):
            os.replace(entry, target / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _checksum_book(root: Path) -> Path:
    return root / "downloads" / "checksums.json"


def fetch(name: str, root: str | Path | None = None, expected_sha256: dict[str, str] | None = None,
          progress: bool = True, sources: dict[str, tuple[Source, ...]] | None = None) -> list[Path]:
    """Download, verify and extract the dataset ``name`` (a key of :data:`SOURCES`).

    Archives are kept in ``root/downloads``. Checksums: ``expected_sha256`` (filename -> hex)
    first, then the table, then the value recorded on the first verified download (see the
    module docstring); a new file's checksum is recorded only once the file is complete and,
    for an archive, has been opened and listed. A dataset folder that already holds the
    completion marker is not extracted again. Returns the extracted folders and plain files.

    Taught in notebooks/01_data_tour.
    """
    from course_lib import config

    sources = SOURCES if sources is None else sources
    if name not in sources:
        raise ValueError(f"Unknown dataset {name!r}; choose from {sorted(sources)}.")
    root = Path(root) if root is not None else config.data_root()
    book_path = _checksum_book(root)
    book = json.loads(book_path.read_text()) if book_path.exists() else {}
    out = []
    for src in sources[name]:
        target = root / src.extract_to if src.extract_to is not None else None
        marked = None if target is None else target / src.dataset_dir if src.dataset_dir \
            else target
        if marked is not None and is_complete(marked):
            out.append(target)  # extracted completely before: nothing to do
            continue
        expected = (expected_sha256 or {}).get(src.filename) or src.sha256 or book.get(src.filename)
        archive = download(src.url, root / "downloads" / src.filename, expected, progress)
        if target is not None:
            check_archive(archive, target)  # opens and lists: a truncated archive fails here
        digest = expected.lower() if expected else sha256_of(archive)
        if src.filename not in book:
            book[src.filename] = digest
            book_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = book_path.with_name(book_path.name + ".tmp")
            tmp.write_text(json.dumps(book, indent=1, sort_keys=True))
            os.replace(tmp, book_path)
        if target is None:
            extracted_file = root / "dsb2018" / src.filename
            extracted_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(archive, extracted_file)
            out.append(extracted_file)
        else:
            out.append(extract(archive, target, src.dataset_dir))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m course_lib.data.download DATASET... [--sha256 F=HEX]``.

    Parses ``argv`` (``sys.argv[1:]`` when None), fetches each named dataset with :func:`fetch`
    into ``config.data_root()`` (enforcing any ``--sha256 FILE=HEX`` checksums given), prints
    one ``name: path`` line per extracted folder or plain file and returns the exit status 0.

    Taught in notebooks/01_data_tour.
    """
    parser = argparse.ArgumentParser(description="Download the course's real datasets.")
    parser.add_argument("datasets", nargs="+", choices=sorted(SOURCES))
    parser.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                        help="expected checksum of a file, e.g. stage1_train.zip=ab12...")
    args = parser.parse_args(argv)
    expected = {}
    for item in args.sha256:
        filename, _, digest = item.partition("=")
        if not digest:
            parser.error(f"--sha256 {item!r}: write FILE=HEX")
        expected[filename] = digest
    for name in args.datasets:
        for path in fetch(name, expected_sha256=expected):
            print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
