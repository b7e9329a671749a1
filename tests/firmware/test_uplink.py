"""The node's uplink, on MicroPython, against a real fleet server process."""

from __future__ import annotations

import json

import httpx

from tools.emulator.fleet_process import FleetServer

# RFC 4231 test case 2 (facts): key "Jefe", data "what do ya want for nothing?".
RFC4231_KEY = b"Jefe".hex()
RFC4231_MAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_hmac_matches_rfc4231_and_long_keys_match_the_host(mpy):
    import hashlib
    import hmac

    long_key = bytes(range(131))
    out = mpy(
        "import json\nfrom binascii import hexlify, unhexlify\n"
        "from crypto.hmac_sha256 import HmacSha256\n"
        f"a = HmacSha256(unhexlify('{RFC4231_KEY}')).digest(b'what do ya ', b'want for nothing?')\n"
        f"b = HmacSha256(unhexlify('{long_key.hex()}')).digest(b'x' * 200)\n"
        "print(json.dumps([hexlify(a).decode(), hexlify(b).decode()]))\n")
    assert out[0][0] == RFC4231_MAC
    assert out[0][1] == hmac.new(long_key, b"x" * 200, hashlib.sha256).hexdigest()


def _identity_script(creds: dict, server: FleetServer, clock_offset: int, body: str,
                     url: str | None = None) -> str:
    """A node script with an Uplink to `server` (or `url`, on the same footing): over https
    with the server's CA pinned in the script's directory, the node's flash root."""
    ident = {"device_id": creds["device_id"], "secret": creds["secret"],
             "server": url or server.url}
    ca = server.tls.ca_der() if server.tls is not None else None
    if ca is None:
        ident["insecure_http"] = True  # a test server; TLS is covered by test_tls_link.py
    return (
        "import json, time\nfrom net.uplink import Uplink\nfrom core.log import Log\n"
        "class Quiet:\n    def write(self, s):\n        pass\n"
        "log = Log(stream=Quiet())\n"
        + (f"with open('fleet_ca.der', 'wb') as f:\n    f.write({ca!r})\n" if ca else "")
        + f"ident = json.loads({json.dumps(json.dumps(ident))})\n"
        f"up = Uplink(ident, lambda: time.time() + {clock_offset}, log=log, root='.')\n" + body)


def test_node_checks_in_and_the_server_records_it(mpy, live_server):
    creds = live_server.register("UP-1", group="harbour")
    httpx.put(f"{live_server.url}/api/v1/groups/harbour/config",
              json={"config": {"dimming": {"dim_level": 25}}}, headers=live_server.operator_headers,
              verify=live_server.ssl_context)
    out = mpy(_identity_script(creds, live_server, 0,
        "reply = up.checkin({'fw_version': '0.1.0', 'uptime_s': 5, 'config_version': 0})\n"
        "print(json.dumps(reply))\n"))
    reply = out[-1]
    assert reply["config"] == {"dimming": {"dim_level": 25}} and reply["next_checkin_s"] > 0
    shown = httpx.get(f"{live_server.url}/api/v1/devices/{creds['device_id']}",
                      headers=live_server.operator_headers,
                      verify=live_server.ssl_context).json()
    assert shown["online"] is True and shown["fw_version"] == "0.1.0"


def test_node_with_a_wrong_clock_corrects_it_and_gets_through(mpy, live_server):
    creds = live_server.register("UP-2")
    out = mpy(_identity_script(creds, live_server, -7200,
        "reply = up.checkin({'fw_version': '0.1.0'})\n"
        "print(json.dumps([reply is not None, up.offset_s]))\n"))
    accepted, offset = out[-1]
    assert accepted is True
    assert 7190 <= offset <= 7210


def test_node_with_a_wrong_key_is_refused_and_says_so(mpy, live_server):
    creds = dict(live_server.register("UP-3"), secret="11" * 32)
    # the server refuses the request; its 401 cannot be signed with a key the node does not
    # share with it, so the node takes nothing from it either (reply signatures)
    proc_out = mpy(_identity_script(creds, live_server, 0,
        "from net.http_client import HttpError\n"
        "try:\n    reply = up.checkin({'fw_version': '0.1.0'})\n"
        "except HttpError as e:\n    reply = repr(e)\n"
        "print(json.dumps([reply, log.recent()[-1]]))\n"))
    reply, last_log = proc_out[-1]
    assert "unsigned" in reply
    assert "reply_refused" in last_log and "status=401" in last_log


def test_unreachable_server_raises_a_clear_error_not_a_crash(mpy, live_server):
    from tools.emulator.fleet_process import free_port

    creds = live_server.register("UP-4")
    nowhere = live_server.url.rsplit(":", 1)[0] + f":{free_port()}"  # nothing listens there
    out = mpy(_identity_script(creds, live_server, 0,
        "from net.http_client import HttpError\n"
        "try:\n    up.checkin({})\n    print(json.dumps('no error'))\n"
        "except HttpError as e:\n    print(json.dumps(str(e)))\n", url=nowhere))
    assert out[-1].startswith("cannot connect to 127.0.0.1")


def test_an_exchange_loads_signing_and_http_for_itself_only(mpy, live_server):
    creds = live_server.register("UP-9")
    out = mpy(_identity_script(creds, live_server, 0,
        "import sys\n"
        "CODE = ('net.uplink_exchange', 'net.http_client', 'crypto.hmac_sha256')\n"
        "ok = up.checkin({'fw_version': '0.1.0'}) is not None\n"
        "after = [m for m in CODE if m in sys.modules]\n"
        "import net.http_client\n"  # loaded by someone else (the update client does): it stays
        "ok2 = up.checkin({'fw_version': '0.1.0'}) is not None\n"
        "kept = [m for m in CODE if m in sys.modules]\n"
        "print(json.dumps([ok, after, ok2, kept, up.addr is not None]))\n"))
    ok, after, ok2, kept, addr_kept = out[-1]
    assert ok and ok2
    assert after == []
    assert kept == ["net.http_client"]
    assert addr_kept is True  # the server's address is resolved once, not per exchange


def test_a_node_enrolled_from_an_insecure_factory_image_keeps_its_plain_http_link(mpy, tmp_path):
    """A lab factory image (`--insecure`) enrolls over plain HTTP; the identity it writes keeps
    that choice, so the node's check-ins go to the same server rather than being refused."""
    from tools.emulator.fleet_process import start_fleet_server

    server = start_fleet_server(tmp_path / "plain", tls=False)  # a lab server, deliberately
    try:
        with server.client(headers=server.operator_headers) as api:
            issued = api.post("/api/v1/devices/batch", json={
                "devices": [{"pole_id": "LAB-1"}], "enrollment": True}).json()[0]
        doc = {"code": issued["enrollment_code"], "server": server.url, "insecure_http": True}
        out = mpy("import json, time\nfrom net import enroll\nfrom net.uplink import Uplink\n"
                  f"open('enrollment.json', 'w').write({json.dumps(json.dumps(doc))})\n"
                  "result = enroll.redeem('.')\n"
                  "ident = json.load(open('identity.json'))\n"
                  "up = Uplink(ident, time.time, root='.')\n"
                  "print(json.dumps([result, ident.get('insecure_http'), "
                  "up.checkin({'fw_version': '1'}) is not None]))\n", cwd=tmp_path)
    finally:
        server.stop()
    assert out[-1] == ["enrolled", True, True]


def test_a_clock_that_keeps_drifting_warns_once_then_resyncs_quietly(mpy, live_server):
    """An emulated clock racing ahead of the server's (virtual time) is corrected again and
    again; only the first correction is a warning."""
    creds = live_server.register("UP-4")
    out = mpy(_identity_script(creds, live_server, 0,
        "drift = [-7200]\n"
        "up.clock_s = lambda: time.time() + drift[0]\n"
        "first = up.checkin({'fw_version': '0.1.0'}) is not None\n"
        "drift[0] += 3600\n"
        "second = up.checkin({'fw_version': '0.1.0'}) is not None\n"
        "seen = [l for l in log.recent() if 'clock_corrected' in l]\n"
        "print(json.dumps([first, second, seen]))\n"))
    first, second, lines = out[-1]
    assert first and second
    assert len(lines) == 2
    assert " WARN " in lines[0] and " INFO " in lines[1], lines
