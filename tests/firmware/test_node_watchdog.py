"""A hung node is reset by the watchdog; the lamp is full from the reset until the node decides."""

from tests.rigs.driver_harness import BOARD_DIRS
from tests.rigs.micropython import run_micropython
from tools.emulator.launcher import NODE_HEAP_KB
from tools.emulator.scenario import DEFAULT_START_EPOCH, Scenario
from tools.emulator.world import FULL_DUTY, World

HANG = """
import emulated
from core.node import Node
board = emulated.Board()
node = Node(board)
board.start_watchdog(30000)
node.run(until_ms=120000)
while True:  # the loop wedges: nothing feeds the watchdog any more
    board.sleep_ms(1000)
"""

AFTER_RESET = """
import json, emulated
from core.node import Node
board = emulated.Board()
node = Node(board)
node.run(until_ms=60000)
print(json.dumps({"reason": node.status()["boot_reason"]}))
"""


def test_watchdog_resets_a_hung_node_which_boots_lit(tmp_path, monkeypatch):
    world = World(Scenario(start_epoch=DEFAULT_START_EPOCH + 10 * 3600, footfall_scale=0.0,
                           bus_stop_per_h=0.0)).start()
    monkeypatch.setenv("LAMPLIGHTER_WORLD", str(world.port))
    monkeypatch.setenv("LAMPLIGHTER_FLASH", str(tmp_path / "flash"))
    try:
        hung = run_micropython(HANG, path_dirs=BOARD_DIRS, heap_kb=NODE_HEAP_KB, cwd=tmp_path,
                               check=False)
        assert hung.returncode == 3, hung.stdout + hung.stderr  # reset by the watchdog
        reset_ms = world.now_ms
        assert 150000 <= reset_ms <= 152000  # 30 s after the last feed at 120 s
        assert abs(world.records.lamp_level_at(110000) - 30) < 0.01  # dimmed before it hung
        out = run_micropython(AFTER_RESET, path_dirs=BOARD_DIRS, heap_kb=NODE_HEAP_KB,
                              cwd=tmp_path)
        assert '"reason": "watchdog"' in out.stdout
        boots = world.records.boots
        assert [cause for _, cause in boots] == ["power_on", "watchdog"]
        lamp = world.records.lamp
        after = [(ms, duty) for ms, duty in lamp if ms >= reset_ms]
        assert after[0][1] == FULL_DUTY  # lit from the reset ...
        first_dim = next(ms for ms, duty in after if duty < FULL_DUTY)
        assert first_dim >= boots[1][0]  # ... until the rebooted node decided to dim
        assert abs(world.records.lamp_level_at(boots[1][0] + 30000) - 30) < 0.01
    finally:
        world.stop()
