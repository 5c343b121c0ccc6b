"""Every benchmark names its CPU (issue 29): figures from different CPUs must never meet.

``bench/machine.py`` reads the CPU model and vector extensions from ``/proc/cpuinfo``; these
tests give it hand-written cpuinfo files (an AVX2-only EPYC, an AVX-512 one with BF16 and
AMX) and check the header says what a reader needs, and that every ``bench_*.py`` prints it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import machine  # noqa: E402

AVX2_EPYC = """processor\t: 0
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
stepping\t: 1
flags\t\t: fpu sse sse2 avx fma avx2 bmi2

processor\t: 1
cpu family\t: 99
model\t\t: 9
model name\t: another block, not read
"""
#: What a KVM guest on a Zen 5 EPYC shows: only the brand, so the numbers must tell.
BRAND_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu avx fma avx2 avx512f avx512_vnni avx512_bf16
"""
SAPPHIRE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu avx fma avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16
"""


@pytest.mark.parametrize(("cpuinfo", "model", "isa"), [
    (AVX2_EPYC, "AMD EPYC 7B13 64-Core Processor (family 25, model 1, stepping 1)",
     "AVX2, FMA"),
    (BRAND_ONLY, "AMD EPYC (family 26, model 2, stepping 1)",
     "AVX2, FMA, AVX-512F, AVX-512 VNNI, AVX-512 BF16"),
    (SAPPHIRE, "Intel(R) Xeon(R) Platinum 8481C",
     "AVX2, FMA, AVX-512F, AVX-512 VNNI, AVX-512 BF16, AMX, AMX-BF16"),
    ("", None, "none of AVX2, FMA"),
])
def test_cpu_facts_name_the_model_and_extensions(tmp_path, cpuinfo, model, isa):
    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    facts = machine.cpu_facts(str(fake))
    if model is not None:
        assert facts["cpu"] == model
    assert facts["isa"].startswith(isa)
    if cpuinfo is AVX2_EPYC:
        assert "AVX-512" not in facts["isa"]


def test_header_names_the_backend_settings(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    text = machine.header("a benchmark")
    lines = text.splitlines()
    assert lines[0] == "a benchmark" and lines[1].startswith("CPU: ")
    import keras

    if keras.backend.backend() == "tensorflow":
        assert "ONEDNN_MAX_CPU_ISA AVX2" in lines[2] and "oneDNN" in lines[2]
        from course_lib.config import cpu_flags

        if "avx2" in cpu_flags():          # capped to AVX2: the halving rule is on, and says so
            assert "oneDNN vectors AVX2 (course Conv2D halves a lone image)" in lines[2]


@pytest.mark.parametrize("script", sorted(BENCH.glob("bench_*.py")), ids=lambda p: p.name)
def test_every_benchmark_prints_the_header(script):
    """Statically: the script calls ``header(...)`` from ``machine`` and prints it."""
    tree = ast.parse(script.read_text())
    imports = any(isinstance(n, ast.ImportFrom) and n.module == "machine"
                  and any(a.name == "header" for a in n.names) for n in ast.walk(tree))
    calls = any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "header"
                for n in ast.walk(tree))
    assert imports and calls, f"{script.name} does not print bench/machine.py's header"
