"""ganbench/training/checkpoint.py: one self-checking file, the previous good one kept, and a
fall-back to it rather than to step 0 (issue 22, item 2); hostile files refused plainly
(item 6)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ganbench.training import checkpoint as ck
from ganbench.training.checkpoint import (CheckpointError, checkpoint_path, keep_only_good,
                                          load_checkpoint, load_with_fallback, previous_path,
                                          read_checkpoint, save_checkpoint)


def state(step: int) -> dict:
    return {"step": step, "w": torch.full((3,), float(step))}


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_one_file_holds_the_state_and_its_own_checksum(tmp_path):
    path = checkpoint_path(tmp_path, "dcgan+bce")
    save_checkpoint(path, state(5))
    data = path.read_bytes()
    header, payload = data.split(b"\n", 1)
    assert header == (b"GANBENCH-CHECKPOINT 1 sha256=" + hashlib.sha256(payload).hexdigest()
                      .encode() + b" bytes=%d" % len(payload))
    assert names(path.parent) == ["dcgan+bce.pt"]  # no sidecar, no temporary
    loaded = load_checkpoint(path)
    assert loaded["step"] == 5 and torch.equal(loaded["w"], torch.full((3,), 5.0))


def test_the_previous_checkpoint_is_kept_until_the_next_is_complete(tmp_path):
    path = checkpoint_path(tmp_path, "c")
    save_checkpoint(path, state(50))
    save_checkpoint(path, state(100))
    assert names(path.parent) == ["c.pt", "c.pt.prev"]
    assert read_checkpoint(path)["step"] == 100
    assert read_checkpoint(previous_path(path))["step"] == 50
    save_checkpoint(path, state(150))  # only one previous is kept
    assert [read_checkpoint(p)["step"] for p in (path, previous_path(path))] == [150, 100]


def flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: flip_byte(d, len(d) // 2), "is damaged or altered"),
    (lambda d: d[:-10], "is truncated or extended"),
    (lambda d: d.replace(b"sha256=", b"sha256:", 1), "has a damaged header"),
    (lambda d: d.split(b"\n", 1)[1], "carries no checksum"),  # header stripped
])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, damage, fragment):
    path = checkpoint_path(tmp_path, "c")
    save_checkpoint(path, state(7))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)  # no previous one to fall back to
    text = str(info.value)
    assert fragment in text and str(path) in text and "\n" not in text


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    path = checkpoint_path(tmp_path, "c")
    save_checkpoint(path, state(50))
    save_checkpoint(path, state(100))
    path.write_bytes(flip_byte(path.read_bytes(), 300))
    loaded, note = load_with_fallback(path)
    assert loaded["step"] == 50
    assert "is damaged or altered" in note and "previous checkpoint, c.pt.prev, at step 50" in note
    assert load_checkpoint(path)["step"] == 50
    with pytest.raises(CheckpointError, match="is damaged"):
        load_checkpoint(path, fallback=False)
    # Before a resume the good one becomes the newest, so the next save cannot push the
    # damaged file into .prev.
    assert "at step 50" in keep_only_good(path)
    assert names(path.parent) == ["c.pt"] and read_checkpoint(path)["step"] == 50
    assert keep_only_good(path) is None  # nothing more to repair


def test_both_damaged_is_the_newest_ones_error(tmp_path):
    path = checkpoint_path(tmp_path, "c")
    save_checkpoint(path, state(50))
    save_checkpoint(path, state(100))
    for p in (path, previous_path(path)):
        p.write_bytes(flip_byte(p.read_bytes(), 300))
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged"):
        load_checkpoint(path)


class Died(BaseException):
    """Stands for the process dying at that instant (nothing after it runs)."""


@pytest.mark.parametrize("dies_at_rename", [1, 2])
def test_death_during_a_save_leaves_a_loadable_checkpoint(tmp_path, monkeypatch,
                                                          dies_at_rename):
    """Rename 1 moves the current file to .prev, rename 2 the new one into place: dying
    before either, or between them, leaves a checkpoint that loads (the old one)."""
    path = checkpoint_path(tmp_path, "c")
    save_checkpoint(path, state(50))
    calls = []
    real = os.replace

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == dies_at_rename:
            raise Died
        return real(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(Died):
        save_checkpoint(path, state(100))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 50
    if dies_at_rename == 2:  # between the renames: only .prev is left, and it is used
        assert not path.exists()
        assert "at step 50" in keep_only_good(path) and read_checkpoint(path)["step"] == 50


def test_a_sigkill_while_saving_never_loses_every_checkpoint(tmp_path):
    """A real SIGKILL at an arbitrary moment of a save loop (the parent's kill of issue 22):
    what is left always loads, at the newest or the previous step."""
    path = checkpoint_path(tmp_path, "c")
    script = f"""
import sys, torch
from ganbench.training.checkpoint import save_checkpoint
path = {str(path)!r}
step = 0
while True:
    step += 1
    save_checkpoint(path, {{"step": step, "w": torch.randn(20_000)}})
    if step == 3:
        print("saving", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saving"
        time.sleep(0.3)  # a few more saves: the kill lands wherever the loop happens to be
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert load_checkpoint(path)["step"] >= 3


def test_a_checkpoint_with_code_is_refused_plainly(tmp_path):
    """weights_only refuses it; the message says so and that nothing ran, and does not pass
    on torch's advice to re-run with weights_only=False."""
    path = checkpoint_path(tmp_path, "c")
    save_checkpoint(path, {"step": 1, "obj": Evil()})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert f"checkpoint {path} was refused" in text and "nothing in it ran" in text
    assert "weights_only" not in text and "\n" not in text
    assert not (tmp_path / "pwned").exists()


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_of_the_earlier_two_file_format_still_loads(tmp_path):
    import io

    path = checkpoint_path(tmp_path, "old")
    path.parent.mkdir(parents=True)
    buffer = io.BytesIO()
    torch.save(state(40), buffer)
    path.write_bytes(buffer.getvalue())
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(f"{hashlib.sha256(buffer.getvalue()).hexdigest()}  {path.name}\n")
    assert load_checkpoint(path)["step"] == 40
    sidecar.write_text("0" * 64 + f"  {path.name}\n")
    with pytest.raises(CheckpointError, match="damaged or altered"):
        load_checkpoint(path)
    sidecar.unlink()
    with pytest.raises(CheckpointError, match="carries no checksum"):
        load_checkpoint(path)
    save_checkpoint(path, state(41))  # the next save writes the new format, no sidecar
    assert names(path.parent) == ["old.pt", "old.pt.prev"]


def test_discard_removes_every_file_of_the_checkpoint(tmp_path):
    path = checkpoint_path(tmp_path, "c")
    save_checkpoint(path, state(1))
    save_checkpoint(path, state(2))
    ck.discard_checkpoint(path)
    assert names(path.parent) == []
