"""Apply ``TF_CPP_MIN_LOG_LEVEL`` to the C++ log lines TensorFlow writes while it is imported.

TensorFlow 2.21 logs through abseil, and abseil writes every message to the process' stderr
(file descriptor 2) until ``absl::InitializeLog()`` is called, which TensorFlow does not do
(upstream: tensorflow/tensorflow PR #102212). ``TF_CPP_MIN_LOG_LEVEL`` is then ignored for
those lines, so a learner on a laptop without an NVIDIA driver sees, under the first cell::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796228401.021071    2881 cudart_stub.cc:31] Could not find cuda drivers ...

Both lines are written during ``import tensorflow`` (measured with TF 2.21: nothing later).
So :func:`install` puts a one-shot import hook on ``sys.meta_path``: the first import of
``tensorflow`` runs with file descriptor 2 pointed at a temporary file, and afterwards every
captured line is written back to the real stderr *unless* it is a C++ log record below the
level ``TF_CPP_MIN_LOG_LEVEL`` asks for (0 keeps all, 1 drops INFO, 2 also WARNING, 3 also
ERROR; FATAL is always kept). Everything else, Python warnings and tracebacks included, comes
back unchanged and in order, also when the import fails. With TensorFlow 2.20 and older
TensorFlow filters by itself and this finds nothing to drop.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

#: A C++ log record's line: abseil's ``I0102 10:11:12.345678 2881 file.cc:31]`` (before
#: absl::InitializeLog the time reads ``00:00:<seconds since 1970>``) or TensorFlow's older
#: ``2026-01-02 10:11:12.345678: I external/.../file.cc:51]``.
_RECORD = re.compile(r"^(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
                     r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) \S+:\d+\])")
#: abseil's notice before its first message, dropped with the records it announces.
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
#: The one record TensorFlow writes over two lines at import (cpu_feature_guard.cc).
_CONTINUATION = "To enable the following instructions"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def filter_log_text(text: str, min_level: int) -> str:
    """Drop the C++ log records below ``min_level`` (TF_CPP_MIN_LOG_LEVEL's scale) from ``text``.

    A record is one line, except cpu_feature_guard's, whose second line ("To enable the
    following instructions...") goes with it. Every other line is kept: a Python warning
    written right after a dropped record is the program's own, not part of the record.
    FATAL records are always kept; abseil's notice goes when ``min_level`` is above 0.

    Taught in notebooks/00_start_here.
    """
    kept, keep_previous = [], True
    for line in text.splitlines(keepends=True):
        match = _RECORD.match(line)
        if match:
            keep = _SEVERITY[match.group(1) or match.group(2)] >= min(min_level, 3)
        elif line.startswith(_ABSL_NOTICE):
            keep = min_level <= 0
        elif line.startswith(_CONTINUATION):
            keep = keep_previous
        else:
            keep = True
        if keep:
            kept.append(line)
        keep_previous = keep
    return "".join(kept)


def _min_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


class _FilteredLoader(importlib.abc.Loader):
    """Runs the wrapped loader with fd 2 captured, then writes back what the level keeps."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, attribute):   # is_package, get_resource_reader, ... pass through
        return getattr(self._loader, attribute)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self._loader.exec_module(module)
            finally:
                sys.stderr.flush()
                # The module keeps the real loader, as if this wrapper had never been there.
                module.__loader__ = self._loader
                if getattr(module, "__spec__", None) is not None:
                    module.__spec__.loader = self._loader
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                text = captured.read().decode("utf-8", errors="replace")
                kept = filter_log_text(text, _min_level())
                if kept:
                    os.write(2, kept.encode("utf-8"))


class _OneShotFinder(importlib.abc.MetaPathFinder):
    """Finds ``name`` through the other finders and wraps its loader, once."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)   # one shot; also keeps find_spec below from recursing
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def install(name: str = "tensorflow") -> None:
    """Filter the C++ log lines of the first import of ``name`` (no-op once it is imported).

    Only the descriptor-level output of that one import is touched; the hook removes itself.

    Taught in notebooks/00_start_here.
    """
    if name in sys.modules or any(isinstance(f, _OneShotFinder) and f.name == name
                                  for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _OneShotFinder(name))
