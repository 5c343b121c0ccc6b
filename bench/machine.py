"""The header every benchmark prints: the CPU, its vector extensions, the backend's settings.

Figures from different CPUs must never be set against each other (an AVX-512 and an AVX2
machine of the same family differ by 40 % on our Mask R-CNN step), so each benchmark names
the machine its figures come from.
"""

from __future__ import annotations

import os
import platform

#: /proc/cpuinfo flags worth naming, in the words a reader knows them by.
FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512F", "avx512_vnni": "AVX-512 VNNI",
         "avx512_bf16": "AVX-512 BF16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16"}


def cpu_facts(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """``{"cpu": model name and generation, "isa": the extensions present, "cores": logical
    cores}``.

    Under a hypervisor the model name may be the brand alone ("AMD EPYC"), the same words on
    CPUs of different generations whose Mask R-CNN steps differ widely (bench/README.md,
    8 Dec 2026); the family / model / stepping numbers tell them apart, so ``cpu`` carries
    them too. Fields and flags are :func:`course_lib.config.cpu_info`'s (what the course's
    layers read too).
    """
    from course_lib.config import cpu_flags, cpu_info

    fields, flags = cpu_info(cpuinfo), cpu_flags(cpuinfo)
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    generation = ", ".join(f"{name} {fields[key]}" for key, name in
                           (("cpu family", "family"), ("model", "model"),
                            ("stepping", "stepping")) if fields.get(key))
    if generation:
        model += f" ({generation})"
    isa = ", ".join(name for flag, name in FLAGS.items() if flag in flags) or "none of " + \
        ", ".join(FLAGS.values())
    return {"cpu": model, "isa": isa, "cores": str(os.cpu_count())}


def backend_facts() -> dict[str, str]:
    """The Keras backend, its version and its CPU settings (oneDNN, ISA cap, threads)."""
    import keras

    backend = keras.backend.backend()
    facts = {"backend": backend}
    if backend == "tensorflow":
        import tensorflow as tf

        facts["version"] = tf.__version__
        facts["oneDNN"] = ("off" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else "on")
        facts["ONEDNN_MAX_CPU_ISA"] = os.environ.get("ONEDNN_MAX_CPU_ISA", "unset (all)")
        from course_lib.config import onednn_runs_avx2

        facts["oneDNN vectors"] = ("AVX2 (course Conv2D halves a lone image)"
                                   if onednn_runs_avx2() else "not AVX2 (one image stays whole)")
        facts["threads"] = (f"intra-op {tf.config.threading.get_intra_op_parallelism_threads()}"
                            f", inter-op {tf.config.threading.get_inter_op_parallelism_threads()}"
                            " (0 = one per core)")
    elif backend == "jax":
        import jax

        facts["version"] = jax.__version__
    elif backend == "torch":
        import torch

        facts["version"] = torch.__version__
        facts["threads"] = str(torch.get_num_threads())
        facts["ATEN_CPU_CAPABILITY"] = os.environ.get("ATEN_CPU_CAPABILITY", "unset (all)")
    facts["keras"] = keras.__version__
    return facts


def header(title: str) -> str:
    """A few lines naming the benchmark, the CPU and the backend settings."""
    c, b = cpu_facts(), backend_facts()
    lines = [title, f"CPU: {c['cpu']}, {c['cores']} logical cores; {c['isa']}",
             "backend: " + ", ".join(f"{k} {v}" for k, v in b.items())]
    return "\n".join(lines)
