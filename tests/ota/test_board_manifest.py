"""Board manifests (firmware/boards/<board>.manifest): a slot holds its own board's files only."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ota.board_manifest import board_files, known_boards
from ota.bundle import load_staged, stage_release
from ota.errors import BuildError
from tools.cli.release import release_app
from tools.emulator.launcher import app_image_kb, build_firmware, install_factory_app
from tools.firmware_tree import FIRMWARE_DIR, STABLE_ROOT_FILES
from tools.technician.provisioning import APP_SLOT, app_files

BOARDS = ["emulated", "esp32_devkitc"]
# lib/ files that only some boards carry, and which ones; every other lib/ file is portable
BOARD_ONLY = {"lib/drivers/esp32_ota.py": {"esp32_devkitc"}}
EMULATED_FILES = {"boards/emulated.py"}


def stage(tmp_path: Path, board: list[str], source: Path = FIRMWARE_DIR, name: str = "stage",
          compile_py: bool = False) -> list[str]:
    manifest = stage_release(source, tmp_path / name, version="1.0.0", sequence=1, board=board,
                             expires=2_000_000_000, created=1_700_000_000,
                             compile_py=compile_py)
    return [f.path for f in manifest.files]


def tiny_app(root: Path, manifests: dict[str, str]) -> Path:
    """An app tree with lib/a.py, lib/b.py, boards/x.py, boards/y.py and the given manifests."""
    app = root / "app"
    for rel in ("lib/a.py", "lib/b.py", "boards/x.py", "boards/y.py", "main.py"):
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(f"# {rel}\n")
    for board, text in manifests.items():
        (app / "boards" / f"{board}.manifest").write_text(text)
    return app


# -- the firmware's own manifests ---------------------------------------------------------------

def test_the_firmware_has_a_manifest_per_board():
    assert known_boards(FIRMWARE_DIR) == BOARDS
    for board in BOARDS:
        assert (FIRMWARE_DIR / "boards" / f"{board}.py").is_file()
        assert f"boards/{board}.py" in board_files(FIRMWARE_DIR, [board])


def test_an_esp32_release_has_no_emulated_board_files(tmp_path):
    paths = stage(tmp_path, ["esp32_devkitc"], compile_py=True)
    assert "boards/esp32_devkitc.mpy" in paths
    assert "lib/drivers/esp32_ota.mpy" in paths
    assert not [p for p in paths if p.startswith("boards/emulated")]
    assert "lib/core/node.mpy" in paths and "lib/updater/client.mpy" in paths
    # no manifest, and none of the stable root files (provisioning installs those once)
    assert not [p for p in paths if p.endswith(".manifest") or "/" not in p]


def test_an_emulated_release_has_its_board_and_not_the_esp32s(tmp_path):
    paths = set(stage(tmp_path, ["emulated"]))
    assert EMULATED_FILES <= paths
    assert "boards/esp32_devkitc.py" not in paths
    assert "lib/drivers/esp32_ota.py" not in paths


def test_a_release_for_two_boards_holds_the_union(tmp_path):
    both = set(stage(tmp_path, ["esp32_devkitc", "emulated"], name="both"))
    esp32 = set(stage(tmp_path, ["esp32_devkitc"], name="esp32"))
    emulated = set(stage(tmp_path, ["emulated"], name="emulated"))
    assert both == esp32 | emulated
    assert esp32 - emulated == {"boards/esp32_devkitc.py", "lib/drivers/esp32_ota.py"}
    assert emulated - esp32 == EMULATED_FILES
    assert board_files(FIRMWARE_DIR, ["emulated", "esp32_devkitc", "emulated"]) == \
        sorted(both, key=lambda n: n.split("/"))


def test_every_lib_file_is_claimed_and_only_the_known_drivers_are_board_only():
    """A new module in lib/ must reach the boards: one no manifest lists is never packed, and
    one only some boards list is a board-only driver (add it to BOARD_ONLY if it is one)."""
    lib = sorted(p.relative_to(FIRMWARE_DIR).as_posix() for p in (FIRMWARE_DIR / "lib").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    per_board = {b: set(board_files(FIRMWARE_DIR, [b])) for b in BOARDS}
    unclaimed = [p for p in lib if not any(p in files for files in per_board.values())]
    assert not unclaimed, f"no board manifest lists {unclaimed}"
    partial = {p: {b for b in BOARDS if p in per_board[b]} for p in lib}
    partial = {p: boards for p, boards in partial.items() if boards != set(BOARDS)}
    assert partial == BOARD_ONLY


def test_every_firmware_file_is_in_a_slot_or_known_to_stay_out():
    """Besides the slots: the stable root files (provisioning installs them once) and service/
    (scripts the technician's tools send over the REPL). A new folder must be one or the other."""
    claimed = set(board_files(FIRMWARE_DIR, BOARDS))
    outside = sorted(p.relative_to(FIRMWARE_DIR).as_posix() for p in FIRMWARE_DIR.rglob("*.py")
                     if "__pycache__" not in p.parts)
    outside = [p for p in outside if p not in claimed and p not in STABLE_ROOT_FILES
               and not p.startswith("service/")]
    assert outside == []


def test_every_board_file_belongs_to_a_board():
    files = {p.relative_to(FIRMWARE_DIR).as_posix() for p in (FIRMWARE_DIR / "boards").glob("*.py")}
    claimed = set(board_files(FIRMWARE_DIR, BOARDS))
    assert files <= claimed


def _local_imports(path: Path) -> set[str]:
    """Modules a firmware file imports, or loads by name through core.ondemand.call."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "call" and isinstance(node.func.value, ast.Name)
              and node.func.value.id == "ondemand" and node.args
              and isinstance(node.args[0], ast.Constant)):
            names.add(node.args[0].value)
    return names


def _module_files(names: list[str]) -> dict[str, str]:
    """Dotted module name -> file, for files of lib/ and boards/ (the slot's sys.path)."""
    found = {}
    for name in names:
        top, _, rest = name.partition("/")
        if top not in ("lib", "boards") or not rest.endswith(".py"):
            continue
        parts = rest[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = name
    return found


@pytest.mark.parametrize("board", BOARDS)
def test_every_module_a_board_loads_is_in_its_slot(board):
    """What the board's files import (or load by name through ondemand) is in its slot too,
    when it is firmware code at all; bootsel.py is at the flash root, outside every slot."""
    everything = _module_files([p.relative_to(FIRMWARE_DIR).as_posix()
                                for p in FIRMWARE_DIR.rglob("*.py")])
    picked = board_files(FIRMWARE_DIR, [board])
    mine = _module_files(picked)
    missing = {}
    for name in picked:
        if not name.endswith(".py"):
            continue
        for module in _local_imports(FIRMWARE_DIR / name):
            if module in everything and module not in mine:
                missing.setdefault(name, []).append(module)
    assert not missing, f"{board}'s slot lacks modules its files load: {missing}"


# -- refusals --------------------------------------------------------------------------------

def test_an_unknown_board_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(BuildError, match="unknown board 'esp8266'.*emulated, esp32_devkitc"):
        board_files(FIRMWARE_DIR, ["esp8266"])
    with pytest.raises(BuildError, match="emulated, esp32_devkitc"):
        stage(tmp_path, ["esp32_devkitc", "esp8266"])
    assert not (tmp_path / "stage").exists()  # refused before anything was written


def test_a_pattern_that_matches_nothing_is_refused(tmp_path):
    app = tiny_app(tmp_path, {"x": "# x\nlib/*.py\nboards/x.py\nlib/gone/**\n"})
    with pytest.raises(BuildError, match=r"x.manifest line 4: lib/gone/\*\* matches no file"):
        board_files(app, ["x"])
    with pytest.raises(BuildError, match="matches no file"):
        stage(tmp_path, ["x"], source=app)


def test_an_exclusion_that_removes_nothing_is_refused(tmp_path):
    app = tiny_app(tmp_path, {"x": "lib/a.py\n!lib/b.py\n"})
    with pytest.raises(BuildError, match=r"line 2: !lib/b.py removes no file"):
        board_files(app, ["x"])


@pytest.mark.parametrize("pattern", ["../secrets/*", "/etc/passwd", "lib/../main.py", "./lib/a.py",
                                     "lib//a.py"])
def test_a_pattern_outside_the_app_tree_is_refused(tmp_path, pattern):
    app = tiny_app(tmp_path, {"x": f"lib/*.py\n{pattern}\n"})
    with pytest.raises(BuildError, match="line 2: .* is not a pattern under the app tree"):
        board_files(app, ["x"])


def test_a_link_to_a_file_outside_the_app_tree_is_refused(tmp_path):
    app = tiny_app(tmp_path, {"x": "lib/**\n"})
    (tmp_path / "secret.py").write_text("KEY = 1\n")
    (app / "lib" / "leak.py").symlink_to(tmp_path / "secret.py")
    with pytest.raises(BuildError, match="leak.py is a link to a file outside"):
        board_files(app, ["x"])


def test_a_manifest_that_adds_nothing_is_refused(tmp_path):
    app = tiny_app(tmp_path, {"x": "# nothing yet\n"})
    with pytest.raises(BuildError, match="adds no file"):
        board_files(app, ["x"])


def test_patterns_exclusions_and_union_in_a_small_tree(tmp_path):
    app = tiny_app(tmp_path, {"x": "lib/**\n!lib/b.py\nboards/x.py\n",
                              "y": "  # indented comment\n\nlib/*.py\nboards/y.py\n"})
    assert board_files(app, ["x"]) == ["boards/x.py", "lib/a.py"]
    assert board_files(app, ["y"]) == ["boards/y.py", "lib/a.py", "lib/b.py"]
    assert board_files(app, ["x", "y"]) == ["boards/x.py", "boards/y.py", "lib/a.py", "lib/b.py"]
    assert stage(tmp_path, ["x"], source=app) == ["boards/x.py", "lib/a.py"]


def test_an_app_without_manifests_packs_every_file(tmp_path):
    app = tiny_app(tmp_path, {})
    assert stage(tmp_path, ["whatever"], source=app) == [
        "boards/x.py", "boards/y.py", "lib/a.py", "lib/b.py", "main.py"]


# -- the CLI, provisioning and the emulator --------------------------------------------------

def test_release_build_for_the_esp32_packs_no_emulated_files(tmp_path):
    runner = CliRunner()
    result = runner.invoke(release_app, ["build", str(FIRMWARE_DIR), "--out", str(tmp_path / "s"),
                                         "--version", "1.2.0", "--sequence", "12",
                                         "--board", "esp32_devkitc", "--no-compile"])
    assert result.exit_code == 0, result.output
    paths = [f.path for f in load_staged(tmp_path / "s").files]
    assert "boards/esp32_devkitc.py" in paths
    assert not [p for p in paths if "emulated" in p]
    refused = runner.invoke(release_app, ["build", str(FIRMWARE_DIR), "--out",
                                          str(tmp_path / "t"), "--version", "1.2.0",
                                          "--sequence", "12", "--board", "esp32"])
    assert refused.exit_code != 0
    assert "unknown board 'esp32'" in refused.output and "esp32_devkitc" in refused.output
    helped = runner.invoke(release_app, ["build", "--help"], env={"COLUMNS": "200"})
    assert "esp32_devkitc alone packs no emulated-board files" in helped.output


def test_an_esp32_factory_slot_has_no_emulated_files():
    slot = [p for p in app_files(board="esp32_devkitc") if p.startswith(APP_SLOT + "/")]
    assert f"{APP_SLOT}/boards/esp32_devkitc.mpy" in slot
    assert f"{APP_SLOT}/lib/drivers/esp32_ota.mpy" in slot
    assert not [p for p in slot if "emulated" in p]
    assert set(STABLE_ROOT_FILES) <= set(app_files(board="esp32_devkitc"))
    sources = [p for p in app_files(compiled=False, board="esp32_devkitc")
               if p.startswith(APP_SLOT + "/") and p.endswith(".py")]
    assert [p[:-3] + ".mpy" for p in sources] == [p for p in slot if p.endswith(".mpy")]


def test_an_emulated_provisioned_slot_has_the_emulated_board_only():
    slot = set(app_files(board="emulated"))
    assert f"{APP_SLOT}/boards/emulated.mpy" in slot
    assert not [p for p in slot if "esp32" in p]


def test_the_emulator_builds_and_installs_the_emulated_board_only(tmp_path):
    build = build_firmware(root=tmp_path / "build")
    built = {p.relative_to(build).as_posix() for p in build.rglob("*") if p.is_file()}
    assert {"boards/emulated.mpy", *STABLE_ROOT_FILES} <= built
    assert not [p for p in built if "esp32" in p]
    flash = tmp_path / "flash"
    assert install_factory_app(flash, build)
    slot = flash / "slots" / "a"
    installed = sorted(p.relative_to(slot).as_posix() for p in slot.rglob("*.mpy"))
    expected = sorted(n[:-3] + ".mpy" for n in board_files(FIRMWARE_DIR, ["emulated"]))
    assert installed == expected
    assert json.loads((slot / "app_version.json").read_text())["build"] == build.name
    # the image the emulated node packs at boot no longer carries the ESP32's code
    everything = build_firmware(root=tmp_path / "build", board=None)
    assert (everything / "boards" / "esp32_devkitc.mpy").exists()
    assert app_image_kb(build) <= app_image_kb(everything)


def test_a_provisioned_emulated_node_keeps_its_own_release(tmp_path):
    """`device emulate --flash-dir` on a node a technician provisioned (or an update
    installed) runs that release: the emulator's build never replaces it."""
    from tools.emulator.launcher import own_release
    from tools.technician.provisioning import app_files

    flash = tmp_path / "flash"
    for path, data in app_files(board="emulated").items():  # slot a, as provisioning leaves it
        (flash / path).parent.mkdir(parents=True, exist_ok=True)
        (flash / path).write_bytes(data)
    provisioned = (flash / "slots" / "a" / "app_version.json").read_text()
    build = build_firmware(root=tmp_path / "build")
    assert own_release(flash) == json.loads(provisioned)["version"]
    assert not install_factory_app(flash, build)
    assert (flash / "slots" / "a" / "app_version.json").read_text() == provisioned
    # a flash the emulator laid out itself is its own build, refreshed when the build changes
    fresh = tmp_path / "fresh"
    assert install_factory_app(fresh, build)
    assert own_release(fresh) is None
