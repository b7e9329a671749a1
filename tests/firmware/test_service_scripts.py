"""The service scripts a technician's tools send to a node (firmware/service/), on MicroPython."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.rigs.micropython import run_micropython
from tools.technician.node_scripts import node_script


def last_json(proc) -> object:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_file_hashes_match_the_host_and_a_missing_file_is_null(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    files = {"lib/a.mpy": b"a" * 1500, "empty.json": b"", "b.py": bytes(range(256)) * 3}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [*files, "gone.py"]
    found = last_json(run_micropython(node_script("file_hashes", f"file_hashes({paths!r})"),
                                      cwd=tmp_path))
    assert found == {**{n: hashlib.sha256(d).hexdigest() for n, d in files.items()},
                     "gone.py": None}


def test_node_state_reads_identity_and_marker_and_nulls_a_torn_file(tmp_path: Path) -> None:
    (tmp_path / "identity.json").write_text(json.dumps({"device_id": "d-1"}))
    (tmp_path / "provisioning.json").write_text('{"started": 1')  # cut mid-write
    state = last_json(run_micropython(
        node_script("node_state", "node_state('identity.json', 'provisioning.json')"),
        cwd=tmp_path))
    assert state == {"platform": "linux", "identity": {"device_id": "d-1"}, "marker": None}


def test_wipe_removes_every_file_and_folder_below_the_directory_only(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    (flash / "slots" / "a" / "lib" / "core").mkdir(parents=True)
    (flash / "slots" / "a" / "lib" / "core" / "node.mpy").write_bytes(b"x")
    (flash / "slots" / "b").mkdir(parents=True)
    (flash / "identity.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("outside")
    run_micropython(node_script("wipe", "wipe('flash')"), cwd=tmp_path)
    assert flash.is_dir() and list(flash.iterdir()) == []
    assert (tmp_path / "keep.txt").read_text() == "outside"
