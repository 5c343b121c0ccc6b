"""pyproject.toml and environment.yml install the same set; the Makefile and CI agree."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_requirements() -> dict[str, Requirement]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml must have exactly one pip: section"
    reqs = {}
    for line in pip_lists[0]:
        if line.startswith("-e"):
            continue
        req = Requirement(line)
        reqs[req.name.lower()] = req
    return reqs


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    env = _env_requirements()
    py_names = {r.name.lower() for r in wanted}
    assert py_names == set(env), (
        f"only in pyproject: {sorted(py_names - set(env))}; only in environment.yml: "
        f"{sorted(set(env) - py_names)}"
    )
    for req in wanted:
        assert str(req.specifier) == str(env[req.name.lower()].specifier), (
            f"{req.name}: pyproject says {req.specifier}, environment.yml says "
            f"{env[req.name.lower()].specifier}"
        )


def test_environment_yml_python_is_allowed_by_pyproject():
    from packaging.specifiers import SpecifierSet

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    version = python.split("=", 1)[1]
    assert version in SpecifierSet(_pyproject()["project"]["requires-python"])
    assert version == "3.11", "the course is written for Python 3.11"


def test_runtime_dependencies_cover_the_stack():
    names = {Requirement(r).name.lower() for r in _pyproject()["project"]["dependencies"]}
    for needed in ("tensorflow", "keras", "numpy", "matplotlib", "ipywidgets", "pycocotools",
                   "scikit-image", "tqdm", "jupyterlab"):
        assert needed in names
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"pytest", "nbval", "hypothesis", "ruff"} <= {Requirement(r).name for r in extras["dev"]}
    assert any(Requirement(r).name == "tensorflow" and "and-cuda" in Requirement(r).extras
               for r in extras["gpu"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    assert re.search(r"^make test\b", ci, re.MULTILINE), ".ci/run must call `make test`"


def test_every_notebook_is_on_the_course_map():
    readme = (ROOT / "README.md").read_text()
    start_here = (ROOT / "notebooks" / "00_start_here.ipynb").read_text()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{nb.name}" in readme, f"README's course map misses {nb.name}"
        if nb.name != "00_start_here.ipynb":
            assert nb.name in start_here, f"00_start_here's course map misses {nb.name}"


def _python_range_in(text: str, pattern: str) -> tuple[str, str]:
    match = re.search(pattern, text)
    assert match, f"no Python range matching {pattern!r}"
    return match.group(1), match.group(2)


def test_supported_pythons_are_3_10_to_3_13_everywhere():
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(_pyproject()["project"]["requires-python"])
    allowed = [f"3.{minor}" for minor in range(8, 16) if f"3.{minor}" in spec]
    assert allowed == ["3.10", "3.11", "3.12", "3.13"], allowed
    # .ci/run's own guard and its messages, the Makefile's and the README's claims agree
    ci = (ROOT / ".ci" / "run").read_text()
    assert _python_range_in(ci, r"\(3, (\d+)\) <= sys\.version_info\[:2\] <= \(3, (\d+)\)") == \
        ("10", "13")
    assert "python3.13" in ci, ".ci/run should also try the newest supported Python"
    makefile = (ROOT / "Makefile").read_text()
    assert _python_range_in(makefile, r"Python 3\.(\d+)-3\.(\d+)") == ("10", "13")
    readme = (ROOT / "README.md").read_text()
    assert _python_range_in(readme, r"Python 3\.(\d+)–3\.(\d+)") == ("10", "13")


def test_make_test_executes_every_notebook_once_per_pass():
    """`make test` runs tests/ (each lesson through nbclient on TensorFlow, with its checked
    cells compared) and nbval over solutions/ and exercises/, never the lessons twice."""
    import test_notebooks_execute as lessons

    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test: .*\n\t((?:.*\\\n)*.*)$", makefile, re.MULTILINE).group(1)
    recipe = recipe.replace("\\\n", " ").split()
    assert {"tests", "solutions", "exercises", "$(NBVAL_FLAGS)"} <= set(recipe), recipe
    assert "notebooks" not in recipe, "the lessons run in tests/test_notebooks_execute.py"
    flags = re.search(r"^NBVAL_FLAGS := (.+)$", makefile, re.MULTILINE).group(1)
    assert "--nbval-lax" in flags and "tests/nbval_sanitize.cfg" in flags
    on_tf = [p.values[0].stem for p in lessons.RUNS if p.values[1] == "tensorflow"]
    assert sorted(on_tf) == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_the_reliability_table_names_tests_that_exist():
    """Each test the README's reliability table names is a test function of that file, so the
    table cannot drift from the tests (``::name`` alone means the file named before it)."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("**Reliability: the faults the tests cover.**"):]
    table = table[:table.index("\nNot covered yet")]
    named = 0
    for row in (line for line in table.splitlines() if line.startswith("| ")):
        current = None
        for ref in re.findall(r"`((?:test_\w+\.py)?::\w+(?:\[[^\]]*\])?|test_\w+\.py::\w+)`", row):
            file_part, name = ref.split("::")
            current = file_part or current
            assert current, f"{ref} names no file in: {row[:80]}"
            source = (ROOT / "tests" / current).read_text()
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{current}::{name}"
            named += 1
    assert named >= 30, named
