"""ganbench.files.atomic: a file is its old version or its new one, never torn; failures name it."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from ganbench.files import atomic


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_write_text_replaces_and_leaves_an_ordinary_file(tmp_path):
    path = tmp_path / "sub" / "a.csv"
    atomic.write_text(path, "old\n")
    atomic.write_text(path, "new\n")
    assert path.read_text() == "new\n" and names(path.parent) == ["a.csv"]
    assert stat.S_IMODE(path.stat().st_mode) == atomic.FILE_MODE  # not mkstemp's 0600


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_a_full_disk_keeps_the_old_file_names_the_path_and_leaves_no_litter(
        tmp_path, monkeypatch, where):
    path = tmp_path / "G.pt"
    atomic.write_bytes(path, b"old")
    monkeypatch.setattr(atomic.os, where, enospc)
    with pytest.raises(atomic.WriteError) as info:
        atomic.write_bytes(path, b"new")
    monkeypatch.undo()
    assert str(info.value) == f"cannot write {path}: No space left on device"
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == b"old" and names(tmp_path) == ["G.pt"]


def test_replacing_gives_a_path_with_the_same_suffix_for_path_only_writers(tmp_path):
    path = tmp_path / "grid.png"
    with atomic.replacing(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_bytes(b"png")
        assert not path.exists()  # nothing visible until the body is done
    assert path.read_bytes() == b"png" and names(tmp_path) == ["grid.png"]


def test_replacing_a_writer_that_fails_half_way(tmp_path):
    path = tmp_path / "grid.png"
    atomic.write_bytes(path, b"old")
    with pytest.raises(ValueError):
        with atomic.replacing(path) as tmp:
            tmp.write_bytes(b"ha")
            raise ValueError("writer bug")  # not an OSError: passes through unchanged
    assert path.read_bytes() == b"old" and names(tmp_path) == ["grid.png"]


def test_replacing_when_the_writer_wrote_nothing(tmp_path):
    with atomic.replacing(tmp_path / "maybe.png", required=False):
        pass  # e.g. no attention layer to draw
    assert names(tmp_path) == []
    with pytest.raises(atomic.WriteError, match="did not create"):
        with atomic.replacing(tmp_path / "must.png"):
            pass


def test_write_group_renames_nothing_unless_every_file_is_on_disk(tmp_path, monkeypatch):
    a, b = tmp_path / "a.pt", tmp_path / "a.pt.sha256"
    atomic.write_group({a: b"1", b: b"sum1"})
    real_fsync, calls = os.fsync, []

    def fsync_second_fails(fd):
        calls.append(fd)
        if len(calls) == 2:
            enospc()
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync_second_fails)
    with pytest.raises(atomic.WriteError, match="a.pt.sha256: No space left"):
        atomic.write_group({a: b"2", b: b"sum2"})
    monkeypatch.undo()
    assert (a.read_bytes(), b.read_bytes()) == (b"1", b"sum1")  # the old pair, still a pair
    assert names(tmp_path) == ["a.pt", "a.pt.sha256"]


def test_sweep_partials_removes_what_a_killed_writer_left(tmp_path):
    keep = tmp_path / "models" / "x.G.pt"
    keep.parent.mkdir()
    keep.write_bytes(b"x")
    left = atomic.temp_path_for(keep)
    left.write_bytes(b"half")
    assert atomic.sweep_partials(tmp_path) == [left]
    assert names(keep.parent) == ["x.G.pt"]


def test_torch_save_round_trip(tmp_path):
    import torch

    path = tmp_path / "m.pt"
    atomic.torch_save({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    assert names(tmp_path) == ["m.pt"]
