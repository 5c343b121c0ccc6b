"""Tests of course_lib.data.prepare with COURSE_DATA pointed at a private tmp folder.

Oracle: what discovery.dataset_status() (written independently by the lead) sees afterwards, and
the files on disk.
"""

from __future__ import annotations

from course_lib import config
from course_lib.data import discovery, prepare
from course_lib.data.nuclei import index_samples


def test_synthetic_nuclei_generated_once(data_root, monkeypatch):
    assert discovery.dataset_status()["nuclei"][0] == "missing"
    path, source = prepare.ensure_nuclei(n_images=3, seed=1, size=48)
    assert source == "synthetic"
    assert path == data_root / "synthetic" / "nuclei" / "stage1_train"
    assert len(index_samples(path)) == 3
    assert discovery.dataset_status()["nuclei"] == ("synthetic", path)
    # a second call with the same settings reuses the set instead of regenerating it
    stamp = {p: p.stat().st_mtime_ns for p in path.rglob("*.png")}
    again, _ = prepare.ensure_nuclei(n_images=3, seed=1, size=48)
    assert again == path and {p: p.stat().st_mtime_ns for p in path.rglob("*.png")} == stamp


def test_marker_written_last_and_other_settings_regenerate(data_root, monkeypatch):
    from course_lib.data.marker import read_marker

    monkeypatch.setenv("COURSE_MODE", "quick")
    path, _ = prepare.ensure_nuclei(n_images=2, seed=0, size=32)
    marker = read_marker(path)
    assert marker == {"generator": "make_nuclei", "n_images": 2, "seed": 0, "size": 32,
                      "mode": "quick"}
    # the marker is the newest file of the set: everything else was written before it
    newest = max(p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file())
    assert (path / ".course-complete.json").stat().st_mtime_ns == newest
    # full mode asks for other settings: the quick set is not silently reused
    monkeypatch.setenv("COURSE_MODE", "full")
    path2, _ = prepare.ensure_nuclei(n_images=3, seed=0, size=32)
    assert path2 == path and len(index_samples(path)) == 3
    assert read_marker(path)["n_images"] == 3 and read_marker(path)["mode"] == "full"
    assert sorted(p.name for p in path.parent.parent.iterdir()) == ["nuclei"]  # no leftovers
    # an interrupted set (marker gone) is not counted and is regenerated
    (path / ".course-complete.json").unlink()
    assert discovery.dataset_status()["nuclei"][0] == "missing"
    prepare.ensure_nuclei(n_images=3, seed=0, size=32)
    assert discovery.dataset_status()["nuclei"] == ("synthetic", path)


def test_default_size_comes_from_the_mode(data_root, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "quick")
    path, _ = prepare.ensure_nuclei(size=32)
    assert len(index_samples(path)) == config.QUICK.n_synthetic_images


def test_real_data_wins(data_root):
    real = data_root / "dsb2018" / "stage1_train" / "abc" / "images"
    real.mkdir(parents=True)
    (real / "abc.png").write_bytes(b"")
    path, source = prepare.ensure_nuclei(n_images=2)
    assert source == "real" and path == data_root / "dsb2018" / "stage1_train"
    assert not (data_root / "synthetic").exists()


def test_voc_and_main(data_root, capsys):
    path, source = prepare.ensure_voc(n_images=2, seed=0)
    assert source == "synthetic" and path == data_root / "synthetic" / "voc" / "VOC2012"
    assert discovery.dataset_status()["voc"] == ("synthetic", path)
    assert len(list((path / "JPEGImages").iterdir())) == 2
    assert prepare.main(["--n-images", "2"]) == 0
    out = capsys.readouterr().out
    assert "nuclei: generated synthetic" in out and "voc: found synthetic" in out
