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
    assert atomic.sweep_partials(tmp_path, ["models"]) == [left]
    assert names(keep.parent) == ["x.G.pt"]


def test_sweep_partials_touches_only_its_own_names_at_the_given_depth(tmp_path):
    """Issue 22: files ganbench never wrote survive, whatever their name, and nothing below
    the named folders is visited."""
    own = atomic.temp_path_for(tmp_path / "results.csv")
    own.write_bytes(b"half")
    theirs = [tmp_path / ".notes.partial.txt",            # no 8-hex token: not ours
              tmp_path / ".cfg.ABCDEF12.partial.json",    # upper case: not token_hex's
              tmp_path / "x.0123abcd.partial.pt"]         # no leading dot
    deep = tmp_path / "models" / "sub"
    deep.mkdir(parents=True)
    deeper = atomic.temp_path_for(deep / "y.pt")          # ours by name, but too deep
    for path in theirs + [deeper]:
        path.write_bytes(b"keep")
    assert atomic.sweep_partials(tmp_path, ["models", "missing"]) == [own]
    assert all(path.read_bytes() == b"keep" for path in theirs + [deeper])


def test_torch_save_on_a_full_file_system_names_the_path(tmp_path):
    """Issue 22, item 3: torch's own writer turns a failed write into 'RuntimeError: [enforce
    fail at inline_container.cc] unexpected pos'; ours is the WriteError naming the file.
    RLIMIT_FSIZE makes the kernel refuse the write (EFBIG) as a full disk refuses it (ENOSPC):
    the same failed write(2), in a child process so the limit binds nothing else."""
    import subprocess
    import sys

    target = tmp_path / "models" / "c.G.pt"
    script = f"""
import resource, signal, torch
from ganbench.files import atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
obj = {{"w": torch.zeros(100_000)}}
try:
    torch.save(obj, {str(tmp_path / "raw.pt")!r})
except Exception as exc:
    print("torch:", type(exc).__name__, str(exc).splitlines()[0])
try:
    atomic.torch_save(obj, {str(target)!r})
except atomic.WriteError as exc:
    print("ours:", exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("torch: RuntimeError [enforce fail at inline_container.cc"), \
        out.stdout + out.stderr  # the failure this guards against, still torch's behaviour
    assert lines[1] == f"ours: cannot write {target}: File too large", out.stdout + out.stderr
    assert names(target.parent) == []  # no truncated file, no temporary left


def test_an_optional_write_that_writes_nothing_leaves_no_new_folder(tmp_path):
    with atomic.replacing(tmp_path / "attention" / "dcgan.png", required=False):
        pass  # a model without attention layers draws nothing
    assert not (tmp_path / "attention").exists()
    (tmp_path / "kept").mkdir()
    with atomic.replacing(tmp_path / "kept" / "x.png", required=False):
        pass
    assert (tmp_path / "kept").is_dir()  # a folder that was there stays


def test_torch_save_round_trip(tmp_path):
    import torch

    path = tmp_path / "m.pt"
    atomic.torch_save({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    assert names(tmp_path) == ["m.pt"]
