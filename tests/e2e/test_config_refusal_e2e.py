"""An emulated lamppost (real MicroPython, the whole firmware) against a live fleet server: a
configuration the node refuses shows, with the node's reason, through the API within two
check-ins; the node is then listed as drifting, and a good version clears both.

How does a node refuse a configuration the server validated? A profile an older server stored
before it validated configuration: here a group profile written straight into the database,
with a key the node does not know.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rigs.hil_rig import Rig
from tools.emulator.fleet_process import start_fleet_server

CHECKIN_INTERVAL_S = 60  # virtual seconds: 3 s of real time at the rig's 20×
REASON = "dim_pct: unknown key"


@pytest.mark.slow
def test_a_configuration_the_node_refuses_shows_its_reason_within_two_checkins(tmp_path: Path):
    from sqlmodel import Session

    from fleet.core.db import make_engine
    from fleet.models import ConfigProfile

    server = start_fleet_server(tmp_path / "server", extra_env={
        "LAMPLIGHTER_CHECKIN_INTERVAL_S": str(CHECKIN_INTERVAL_S)})
    rig = Rig(server, tmp_path)
    try:
        engine = make_engine(server.env["LAMPLIGHTER_DATABASE_URL"])
        with Session(engine) as session:  # what an older server accepted without a check
            session.add(ConfigProfile(scope="group", target="rig", version=2,
                                      body={"dim_pct": 40}))
            session.commit()
        engine.dispose()
        [node] = rig.add_nodes(1, group="rig", checkin_interval_s=CHECKIN_INTERVAL_S)
        path = f"/api/v1/devices/{node.device_id}/config"

        def refused() -> bool:
            return rig.api("GET", path)["refused_version"] is not None  # type: ignore[index]

        rig.wait_until("the node's refusal in GET …/config", refused, timeout=30)
        view = rig.api("GET", path)
        assert isinstance(view, dict)
        assert (view["desired_version"], view["applied_version"], view["refused_version"],
                view["refused_reason"]) == (2, 0, 2, REASON)
        # the first check-in brought version 2, the second carried the node's refusal
        assert view["behind_checkins"] <= 2 and view["drifting"] is False
        events = rig.api("GET", f"/api/v1/devices/{node.device_id}/events",
                         params={"kind": "config_refused"})
        assert isinstance(events, dict)
        assert [e["detail"] for e in events["events"]] == [{"version": 2, "reason": REASON}]
        assert sum("config_refused" in line for line in node.launcher.lines) == 1  # not resent

        def listed() -> list:
            page = rig.api("GET", "/api/v1/config/drift", params={"group": "rig"})
            return page["nodes"]  # type: ignore[index]

        rig.wait_until("the node listed as drifting", lambda: bool(listed()), timeout=20)
        [drifting] = listed()
        assert (drifting["device_id"], drifting["desired_version"], drifting["applied_version"],
                drifting["refused_reason"]) == (node.device_id, 2, 0, REASON)

        # the operator stores a good configuration: applied, and nothing is left standing
        rig.api("PUT", "/api/v1/groups/rig/config", json={"config": {"dimming": {"dim_level": 40}}})
        rig.wait_until("version 3 applied", lambda: (
            rig.api("GET", path)["applied_version"] == 3), timeout=20)  # type: ignore[index]
        view = rig.api("GET", path)
        assert isinstance(view, dict)
        assert (view["refused_version"], view["refused_reason"], view["drifting"]) == \
            (None, None, False)
        assert listed() == []
    finally:
        rig.stop()
        server.stop()
