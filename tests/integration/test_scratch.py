"""Scratch folders of dead workers are cleared, live workers' never: real processes killed
with SIGKILL, as a crash leaves them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from framecast.engines.preview import PreviewEngine
from framecast.models import all_models
from framecast.settings import Settings
from framecast.worker.loop import Worker
from framecast.worker.scratch import Scratch, clear_stale

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from framecast.worker.scratch import Scratch
    folder = Scratch(Path(sys.argv[1]), sys.argv[2]).claim()
    (folder / "req-1234abcd").mkdir()
    (folder / "req-1234abcd" / "video.mp4").write_bytes(b"half a video")
    print("ready", flush=True)
    time.sleep(60)
    """
)


def killed_worker(root: Path, owner: str) -> Path:
    """A process that claimed ``owner``'s scratch folder, wrote into it, and was killed -9."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), owner], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        proc.kill()
        proc.wait()
    folder = root / owner
    assert (folder / "req-1234abcd" / "video.mp4").exists()
    return folder


def test_clear_stale_removes_dead_workers_folders_only(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    dead = killed_worker(root, "host-111-aaaaaa")
    live = Scratch(root, "host-222-bbbbbb")
    live_folder = live.claim()
    (live_folder / "req-in-progress").mkdir()
    legacy = root / "3f1c-req-5678abcd"  # framecast before scratch folders had owners
    legacy.mkdir()

    removed = clear_stale(root)

    assert sorted(removed) == sorted([dead, legacy])
    assert not dead.exists() and not (root / "host-111-aaaaaa.lock").exists()
    assert not legacy.exists()
    assert (live_folder / "req-in-progress").is_dir()  # held: untouched
    assert clear_stale(root) == []
    live.release()
    assert not live_folder.exists() and not (root / "host-222-bbbbbb.lock").exists()


def test_a_worker_clears_leftovers_at_start_and_its_own_at_stop(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    root = settings.data_dir / "tmp"
    dead = killed_worker(root, "host-333-cccccc")
    worker = Worker(settings, engines={spec.id: PreviewEngine() for spec in all_models(settings)})
    worker.run(max_jobs=0)  # starts, clears, stops
    assert not dead.exists()
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == []
