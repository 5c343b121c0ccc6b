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
interruption; the file gets its final name only once complete and verified. Extraction checks
every member before writing anything and refuses absolute paths, ``..`` escapes, links
(symbolic or hard) and device files, naming the offending member.
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

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The transfer failed or stopped early; the ``.part`` file is kept for resuming.

    Taught in notebooks/01_data_tour.
    """


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 differs from the expected one.

    Taught in notebooks/01_data_tour.
    """


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the target folder, or is a link or device.

    Taught in notebooks/01_data_tour.
    """


@dataclass(frozen=True)
class Source:
    """One downloadable file: where from, what to call it, where to extract it (relative to
    the data root; ``None`` = keep the file as it is), and its SHA-256 when known.

    Taught in notebooks/01_data_tour.
    """

    url: str
    filename: str
    extract_to: str | None
    sha256: str | None = None


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
               "VOCtrainval_11-May-2012.tar", "."),
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


def download(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial transfer, and verify it.

    Args:
        url: http(s) address.
        dest: final file path; the transfer is written to ``dest + ".part"``.
        sha256: expected hex digest (case-insensitive), or ``None`` to skip verification here.
        progress: show a tqdm progress bar.

    A ``dest`` that already exists and matches ``sha256`` is not downloaded again (without a
    checksum, an existing ``dest`` is returned as it is).

    Raises:
        DownloadError: network failure or early end; run again to resume from the ``.part``.
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
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: the .part is already complete
            response = None
        else:
            raise DownloadError(f"Downloading {url} failed: HTTP {err.code} {err.reason}. "
                                "Check the address or try again later.") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"Could not reach {url}: {err}. Check the network (or a proxy) "
                            f"and run again; {part} is kept for resuming.") from err
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            if start and status != 206:  # server ignored Range: start over
                start = 0
            length = response.headers.get("Content-Length")
            total = start + int(length) if length is not None else None
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
            if total is not None and received < total:
                raise DownloadError(
                    f"Transfer of {url} ended after {received} of {total} bytes; run the same "
                    f"download again to resume from {part}.")
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


def check_archive(archive: str | Path, target: str | Path) -> list[str]:
    """Names of the members of a zip or tar ``archive``, after checking they are all safe to
    extract into ``target``.

    Raises:
        UnsafeArchiveError: names the first member with an absolute path, a ``..`` escape, or
            that is a symbolic link, hard link or device/FIFO.
        ValueError: ``archive`` is neither zip nor tar.

    Taught in notebooks/01_data_tour.
    """
    archive, target = Path(archive), Path(target).resolve()
    names = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                problem = _member_problem(info.filename, target)
                mode = info.external_attr >> 16
                if problem is None and stat.S_ISLNK(mode):
                    problem = "is a symbolic link"
                if problem:
                    raise UnsafeArchiveError(_refusal(archive, info.filename, problem))
                names.append(info.filename)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                problem = _member_problem(member.name, target)
                if problem is None and member.issym():
                    problem = "is a symbolic link"
                elif problem is None and member.islnk():
                    problem = "is a hard link"
                elif problem is None and not (member.isfile() or member.isdir()):
                    problem = "is a device or FIFO"
                if problem:
                    raise UnsafeArchiveError(_refusal(archive, member.name, problem))
                names.append(member.name)
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive; delete it and "
                         "download again.")
    return names


def _refusal(archive: Path, member: str, problem: str) -> str:
    return (f"Refusing to extract {archive}: member {member!r} {problem}. The archive is "
            "damaged or hostile; nothing was extracted. Delete it and download it again from "
            "the official source.")


def extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a zip or tar archive into ``target`` after :func:`check_archive` passed for
    every member (so a hostile archive writes nothing). Returns ``target``.

    Taught in notebooks/01_data_tour.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    check_archive(archive, target)
    root = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                out = root / PurePosixPath(info.filename.replace("\\", "/"))
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                out = root / PurePosixPath(member.name)
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                with src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    return target


def _checksum_book(root: Path) -> Path:
    return root / "downloads" / "checksums.json"


def fetch(name: str, root: str | Path | None = None, expected_sha256: dict[str, str] | None = None,
          progress: bool = True, sources: dict[str, tuple[Source, ...]] | None = None) -> list[Path]:
    """Download, verify and extract the dataset ``name`` (a key of :data:`SOURCES`).

    Archives are kept in ``root/downloads``. Checksums: ``expected_sha256`` (filename -> hex)
    first, then the table, then the value recorded on the first verified download (see the
    module docstring); a new file's checksum is recorded. Returns the extracted folders and
    plain files.

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
        expected = (expected_sha256 or {}).get(src.filename) or src.sha256 or book.get(src.filename)
        extracted_file = root / "dsb2018" / src.filename if src.extract_to is None else None
        archive = download(src.url, root / "downloads" / src.filename, expected, progress)
        digest = expected.lower() if expected else sha256_of(archive)
        if src.filename not in book:
            book[src.filename] = digest
            book_path.parent.mkdir(parents=True, exist_ok=True)
            book_path.write_text(json.dumps(book, indent=1, sort_keys=True))
        if src.extract_to is None:
            extracted_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(archive, extracted_file)
            out.append(extracted_file)
        else:
            out.append(extract(archive, root / src.extract_to))
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
