"""course_lib.config: modes, data discovery, seeds, the report line every notebook prints."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from course_lib import config, session
from course_lib.data import discovery


def test_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    assert config.mode() == "full" and config.settings() is config.FULL
    monkeypatch.setenv("COURSE_MODE", "Quick ")
    assert config.mode() == "quick" and config.settings() is config.QUICK


def test_unknown_mode_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    with pytest.raises(ValueError, match=r"COURSE_MODE='fast'.*quick.*full"):
        config.mode()


def test_without_override_mode_depends_on_gpus(monkeypatch):
    monkeypatch.delenv("COURSE_MODE", raising=False)
    monkeypatch.setattr(config, "gpu_devices", lambda: ())
    assert config.mode() == "quick"
    monkeypatch.setattr(config, "gpu_devices", lambda: ("/physical_device:GPU:0",))
    assert config.mode() == "full"


def test_quick_mode_is_smaller_than_full():
    q, f = config.QUICK, config.FULL
    assert q.image_size < f.image_size and q.epochs < f.epochs
    assert q.n_synthetic_images < f.n_synthetic_images


def test_cpu_flags_reads_the_flags_line_and_is_empty_where_it_cannot(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\n"
                       "flags\t\t: fpu sse2 avx2 fma avx512f\n\nprocessor\t: 1\n")
    assert config.cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx2", "fma", "avx512f"}
    assert config.cpu_flags(str(tmp_path / "absent")) == frozenset()


def test_cpu_info_reads_the_first_processor_block_only(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
                       "flags\t\t: fpu avx2\n\nprocessor\t: 1\ncpu family\t: 99\n"
                       "flags\t\t: amx_tile\n")
    assert config.cpu_info(str(cpuinfo)) == {"processor": "0", "cpu family": "26", "model": "2",
                                             "model name": "AMD EPYC", "flags": "fpu avx2"}
    assert config.cpu_flags(str(cpuinfo)) == {"fpu", "avx2"}       # not the second block's
    assert config.cpu_info(str(tmp_path / "absent")) == {}


AVX2_CPU = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_CPU = AVX2_CPU | {"avx512f", "avx512bw", "avx512_bf16"}


@pytest.mark.parametrize("flags, env, want", [
    (AVX2_CPU, {}, True),                                        # a Zen 3 or laptop CPU
    (AVX512_CPU, {}, False),                                     # oneDNN takes AVX-512
    (AVX512_CPU, {"ONEDNN_MAX_CPU_ISA": "avx2"}, True),          # capped, as the benches do
    (AVX512_CPU, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, False),
    (AVX2_CPU, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, True),     # a cap above the CPU: the CPU
    (AVX2_CPU, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
    (AVX2_CPU, {"ONEDNN_MAX_CPU_ISA": "SSE41"}, False),          # capped below AVX2
    (AVX2_CPU, {"ONEDNN_MAX_CPU_ISA": "AVX"}, False),
    (AVX2_CPU, {"TF_ENABLE_ONEDNN_OPTS": "0"}, False),           # oneDNN off: Eigen
    (frozenset({"sse4_2", "avx"}), {}, False),                   # no AVX2
    (frozenset(), {}, False),                                    # flags unknown (macOS, Windows)
])
def test_onednn_runs_avx2_reads_the_cpu_and_the_caps(flags, env, want, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(config, "keras_backend", lambda: "tensorflow")
    assert config.onednn_runs_avx2(flags) is want
    monkeypatch.setattr(config, "keras_backend", lambda: "jax")     # oneDNN is TensorFlow's
    assert config.onednn_runs_avx2(flags) is False


def test_dataset_status_prefers_real_over_synthetic(data_root):
    assert discovery.dataset_status()["nuclei"] == ("missing", None)
    synthetic = data_root / "synthetic/nuclei/stage1_train"
    (synthetic / "abc").mkdir(parents=True)
    # a synthetic set counts only once its completion marker (written last) is there
    assert discovery.dataset_status()["nuclei"] == ("missing", None), "half a set is not data"
    (synthetic / ".course-complete.json").write_text('{"n_images": 1}')
    assert discovery.dataset_status()["nuclei"] == ("synthetic", synthetic)
    real = data_root / "dsb2018/stage1_train"
    real.mkdir(parents=True)
    assert discovery.dataset_status()["nuclei"][0] == "synthetic", "an empty folder is not data"
    (real / "id1").mkdir()
    assert discovery.dataset_status()["nuclei"] == ("real", real)


def _draws():
    """One draw from every generator a notebook uses: Python, NumPy, keras.random, a fresh
    layer's initial weights, and TensorFlow's own global generator."""
    import keras
    import tensorflow as tf

    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    return (random.random(), np.random.rand(3),
            keras.ops.convert_to_numpy(keras.random.uniform((3,))),
            keras.ops.convert_to_numpy(layer.kernel), tf.random.uniform((2,)).numpy())


def test_set_seed_makes_every_generator_repeat():
    config.set_seed(7)
    a = _draws()
    config.set_seed(7)
    b = _draws()
    config.set_seed(8)
    c = _draws()
    for x, y, z in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


def test_set_seed_reports_what_it_cannot_fix(monkeypatch):
    monkeypatch.setattr(config, "_HASH_SEED_AT_START", None)
    facts = config.set_seed(3)
    assert facts["seed"] == "3" and facts["deterministic ops"] == "off"
    assert facts["str hashing"].startswith("random per process")
    monkeypatch.setattr(config, "_HASH_SEED_AT_START", "0")
    assert config.set_seed(3)["str hashing"] == "fixed (PYTHONHASHSEED=0)"


def _hash_in_fresh_python(env_seed: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    if env_seed is not None:
        env["PYTHONHASHSEED"] = env_seed
    # what the old set_seed did: set the variable at run time, then hash
    code = "import os; os.environ['PYTHONHASHSEED'] = '0'; print(hash('nucleus'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout


def test_pythonhashseed_works_only_at_start_which_is_why_set_seed_leaves_it():
    """The fact behind set_seed's docstring, shown on the interpreter itself: setting the
    variable at run time leaves str hashes random; setting it before the start fixes them."""
    assert _hash_in_fresh_python(None) != _hash_in_fresh_python(None)
    assert _hash_in_fresh_python("0") == _hash_in_fresh_python("0")


@pytest.mark.slow
def test_set_seed_can_switch_on_tensorflow_op_determinism():
    # in a fresh interpreter: the switch is process-wide and TensorFlow offers no public "off"
    # (TensorFlow's public API can switch it on but not read it; the reader is internal)
    code = ("from tensorflow.python.framework.config import is_op_determinism_enabled as on; "
            "from course_lib import config; before = on(); "
            "facts = config.set_seed(1, deterministic_ops=True); "
            "print(before, on(), "
            "facts['deterministic ops'].replace(' ', '_'))")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    assert out == ["False", "True", "on_(tensorflow)"]


# ------------------------------------------------------------------- the Keras backend

@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A private KERAS_HOME and no KERAS_BACKEND."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    return tmp_path


def test_configured_backend_reads_env_then_keras_json_then_default(keras_home, monkeypatch):
    assert config.keras_config_path() == keras_home / "keras.json"
    assert config.configured_keras_backend() == "tensorflow"            # no file: the default
    (keras_home / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    assert config.configured_keras_backend() == "jax"                   # the file
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert config.configured_keras_backend() == "torch"                 # env beats the file
    monkeypatch.setenv("KERAS_BACKEND", "")
    assert config.configured_keras_backend() == "jax"                   # empty env is unset
    (keras_home / "keras.json").write_text("{not json")
    assert config.configured_keras_backend() == "tensorflow"            # broken file: default
    (keras_home / "keras.json").write_text(json.dumps({"floatx": "float32"}))
    assert config.configured_keras_backend() == "tensorflow"            # no "backend" key


def test_keras_config_path_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.keras_config_path() == tmp_path / ".keras" / "keras.json"


def test_keras_backend_asks_keras_once_imported(keras_home, monkeypatch):
    import keras

    # keras is imported in this process: its answer wins over a changed environment
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert config.keras_backend() == keras.config.backend()


def test_keras_backend_before_import_agrees_with_keras_itself(keras_home):
    """Oracle: Keras. In a fresh interpreter with only keras.json saying "jax", the course's
    answer before importing Keras must equal Keras' own answer after."""
    (keras_home / "keras.json").write_text(json.dumps({"backend": "jax"}))
    code = ("from course_lib import config; before = config.keras_backend(); import keras; "
            "print(before, keras.config.backend(), config.keras_backend())")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    assert out == ["jax", "jax", "jax"]


def test_report_prints_mode_backend_and_data(data_root, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MODE", "quick")
    facts = session.report(verbose=True)
    out = capsys.readouterr().out
    assert "Mode: quick" in out and "Keras backend: tensorflow" in out
    assert "nuclei: missing" in out and "voc: missing" in out
    assert facts["mode"] == "quick" and facts["keras"] != "not installed"
    assert facts["python"].startswith("3.")
