"""The street's Wi-Fi: read from a file or asked, checked, written as /wifi.json, never shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import tools.cli.device  # noqa: F401  (attaches the device commands)
import tools.technician.provisioning as provisioning
from tests.rigs.esp_firmware import write_firmware
from tools.cli.main import app
from tools.emulator.fleet_process import FleetServer
from tools.technician import wifi
from tools.technician.factory_image import VFS_OFFSET, read_filesystem
from tools.technician.wifi import WifiError, read_file

PASSWORD = "tallow&wick 0412"  # 16 printable ASCII characters, a space among them
BASE = 0x1000


def write(tmp_path: Path, text: str, name: str = "wifi.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


# --- the file forms -----------------------------------------------------------------------

def test_the_json_form_gives_the_nodes_wifi_json(tmp_path: Path) -> None:
    creds = read_file(write(tmp_path, json.dumps({"ssid": "Kade-Noord",
                                                  "password": PASSWORD})))
    assert json.loads(creds.wifi_json().decode("utf-8")) == {"ssid": "Kade-Noord",
                                                             "password": PASSWORD}
    assert not creds.open


def test_the_two_line_form_keeps_the_passphrase_as_written(tmp_path: Path) -> None:
    creds = read_file(write(tmp_path, f"\ufeffssid=Straße 7\npassword= {PASSWORD} \n\n"))
    assert creds.ssid == "Straße 7" and creds.password == f" {PASSWORD} "
    # UTF-8 on the node, the name's bytes as they are
    assert creds.wifi_json() == (b'{"ssid": "Stra\xc3\x9fe 7", "password": " '
                                 + PASSWORD.encode() + b' "}')
    crlf = read_file(write(tmp_path, f"password={PASSWORD}\r\nssid=Kade\r\n"))
    assert (crlf.ssid, crlf.password) == ("Kade", PASSWORD)


def test_a_64_hex_digit_key_and_an_open_network_are_accepted(tmp_path: Path) -> None:
    key = "0123456789abcdefABCDEF" * 2 + "0123456789abcdefABCD"
    assert len(key) == 64
    assert read_file(write(tmp_path, f"ssid=Kade\npassword={key}\n")).password == key
    open_net = read_file(write(tmp_path, '{"ssid": "Kade", "password": ""}'))
    assert open_net.open and json.loads(open_net.wifi_json()) == {"ssid": "Kade", "password": ""}


@pytest.mark.parametrize("text", [
    f"Kade-Noord\n{PASSWORD}\n",                                   # bare lines
    f"ssid: Kade-Noord\npassword: {PASSWORD}\n",                   # YAML
    f'{{"ssid": "Kade-Noord", "passphrase": "{PASSWORD}"}}',      # another key
    f'{{"ssid": "Kade-Noord", "password": "{PASSWORD}", "x": 1}}',  # an extra key
    '{"ssid": "Kade-Noord"}',                                      # no password key
    f"ssid=Kade-Noord\nssid=Other\npassword={PASSWORD}\n",         # a key twice
    f"ssid=Kade-Noord\npsk={PASSWORD}\n",                          # an unknown key
    f'{{"ssid": "Kade-Noord", "password": "{PASSWORD}"',           # broken JSON
    "",
])
def test_anything_else_is_refused_naming_the_format(tmp_path: Path, text: str) -> None:
    with pytest.raises(WifiError) as refused:
        read_file(write(tmp_path, text))
    said = str(refused.value)
    assert "is not a Wi-Fi credentials file" in said
    assert '{"ssid": "<network name>", "password": "<passphrase>"}' in said
    assert "ssid=<network name> and password=<passphrase>" in said
    assert PASSWORD not in said and PASSWORD not in repr(refused.value)


@pytest.mark.parametrize(("ssid", "password", "reason"), [
    ("Kade", "short7!", "7 characters long: a WPA2 passphrase has 8 to 63"),
    ("Kade", "x" * 64, "64 characters long"),   # 64 characters but not hex
    ("Kade", "x" * 65, "65 characters long"),
    ("Kade", "caf\u00e9-au-lait", "not printable ASCII"),
    ("Kade", "tab\there-long", "not printable ASCII"),
    ("", PASSWORD, "network name (SSID) is empty"),
    ("\u00e9" * 17, PASSWORD, "is 34 bytes of UTF-8; a Wi-Fi network name has at most 32"),
    ("Ka\tde", PASSWORD, "control character"),
])
def test_bad_credentials_say_why_without_the_passphrase(tmp_path: Path, ssid: str,
                                                        password: str, reason: str) -> None:
    path = write(tmp_path, json.dumps({"ssid": ssid, "password": password}))
    with pytest.raises(WifiError) as refused:
        read_file(path)
    said = str(refused.value)
    assert reason in said and said.startswith(f"{path}: ")
    if password:
        assert password not in said and password not in repr(refused.value)


def test_the_passphrase_stays_out_of_repr(tmp_path: Path) -> None:
    creds = read_file(write(tmp_path, f"ssid=Kade\npassword={PASSWORD}\n"))
    assert PASSWORD not in repr(creds) and "Kade" in repr(creds)
    assert PASSWORD not in creds.describe()


def test_a_missing_file_is_named() -> None:
    with pytest.raises(WifiError, match="cannot read the Wi-Fi file /nonexistent/wifi.json"):
        read_file(Path("/nonexistent/wifi.json"))


def test_boundaries_of_a_passphrase_and_a_name() -> None:
    assert wifi.check("k" * 32, "p" * 8).ssid == "k" * 32
    assert wifi.check("\u00e9" * 16, "~" * 63).password == "~" * 63  # 32 bytes of UTF-8
    assert wifi.password_problem(" " * 8) is None  # spaces are printable ASCII
    assert wifi.ssid_problem("k" * 33) is not None
    assert wifi.password_problem("0" * 63 + "g") is not None  # 64 characters, not hex


# --- factory images -----------------------------------------------------------------------

@pytest.fixture
def server_env(live_server: FleetServer, monkeypatch: pytest.MonkeyPatch) -> FleetServer:
    monkeypatch.setenv("LAMPLIGHTER_CA", str(live_server.verify))
    monkeypatch.delenv("LAMPLIGHTER_FIRMWARE_PINS", raising=False)
    return live_server


def devices(server: FleetServer) -> list[dict]:
    return httpx.get(f"{server.url}/api/v1/devices", headers=server.operator_headers,
                     verify=server.ssl_context).json()


def factory_image(server: FleetServer, tmp_path: Path, *args: str, stdin: str | None = None):
    fw = write_firmware(tmp_path / "ESP32_GENERIC-v1.24.1.bin", "esp32", "v1.24.1")
    return CliRunner().invoke(app, ["device", "factory-image", "--firmware", str(fw),
                                    "--server", server.url, "--token", server.operator_token,
                                    *args], input=stdin)


def image_files(path: Path) -> dict[str, bytes]:
    return read_filesystem(path.read_bytes()[VFS_OFFSET - BASE:])


def test_without_a_terminal_or_a_file_a_factory_image_is_refused(
        server_env: FleetServer, tmp_path: Path) -> None:
    result = factory_image(server_env, tmp_path, "--pole", "N-1", "--out",
                           str(tmp_path / "n1.bin"))
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "no terminal to ask for it on" in said
    assert "--wifi FILE" in said and "--no-wifi" in said
    assert "never taken on the command line" in said
    assert devices(server_env) == [] and not (tmp_path / "n1.bin").exists()
    both = factory_image(server_env, tmp_path, "--pole", "N-1", "--out",
                         str(tmp_path / "n1.bin"), "--no-wifi", "--wifi",
                         str(write(tmp_path, f"ssid=K\npassword={PASSWORD}")))
    assert both.exit_code == 1 and "give one of them" in both.output


def test_an_unsupported_firmware_is_refused_before_the_wifi_is_asked_for(
        server_env: FleetServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wifi, "stdin_is_terminal", lambda: True)
    fw = write_firmware(tmp_path / "ESP32_GENERIC-v1.21.0.bin", "esp32", "v1.21.0")
    result = CliRunner().invoke(app, [
        "device", "factory-image", "--firmware", str(fw), "--server", server_env.url,
        "--token", server_env.operator_token, "--pole", "U-1", "--out", str(tmp_path / "u.bin")],
        input="Kade-Noord\n" + PASSWORD + "\n" + PASSWORD + "\n")
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "v1.21.0" in said and "Wi-Fi" not in said  # refused without a question asked
    assert devices(server_env) == [] and not (tmp_path / "u.bin").exists()


def test_the_prompt_asks_the_passphrase_twice_hidden_and_images_hold_it(
        server_env: FleetServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(wifi, "stdin_is_terminal", lambda: True)
    out = tmp_path / "p1.bin"
    # a name too long first, a passphrase too short, one mistyped confirmation, then right
    stdin = "\n".join(["x" * 33, "Kade-Noord", "qz9x7", "qz9x7", PASSWORD, PASSWORD + "!",
                       PASSWORD, PASSWORD]) + "\n"
    result = factory_image(server_env, tmp_path, "--pole", "P-1", "--out", str(out),
                           stdin=stdin)
    assert result.exit_code == 0, result.output
    assert json.loads(image_files(out)["wifi.json"]) == {"ssid": "Kade-Noord",
                                                         "password": PASSWORD}
    said = " ".join(result.output.split())
    assert "Wi-Fi passphrase (hidden; empty for an open network)" in said
    assert "at most 32" in said and "5 characters long" in said
    assert "do not match" in said
    assert "Wi-Fi network 'Kade-Noord'" in said
    # hidden: neither the passphrase nor the refused ones are echoed, nor logged
    assert PASSWORD not in result.output and "qz9x7" not in result.output
    assert PASSWORD not in caplog.text
    assert PASSWORD not in server_env.log_path.read_text(errors="replace")


def test_an_open_network_is_confirmed_and_warned_about(
        server_env: FleetServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wifi, "stdin_is_terminal", lambda: True)
    out = tmp_path / "o1.bin"
    # empty passphrase twice, "no" (it was a slip), then empty again and "yes"
    result = factory_image(server_env, tmp_path, "--pole", "O-1", "--out", str(out),
                           stdin="Kade-Open\n\n\nn\n\n\ny\n")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "is an open network, with no passphrase. Is that right?" in said
    assert "WARNING: 'Kade-Open' is an OPEN Wi-Fi network" in said
    assert json.loads(image_files(out)["wifi.json"]) == {"ssid": "Kade-Open", "password": ""}


def test_a_bad_wifi_file_is_refused_before_anything_is_registered(
        server_env: FleetServer, tmp_path: Path) -> None:
    bad = write(tmp_path, f"Kade-Noord\n{PASSWORD}\n")
    bad.chmod(0o644)
    result = factory_image(server_env, tmp_path, "--pole", "B-1", "--out",
                           str(tmp_path / "b1.bin"), "--wifi", str(bad))
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "is not a Wi-Fi credentials file" in said and "ssid=<network name>" in said
    assert PASSWORD not in result.output
    assert devices(server_env) == [] and not (tmp_path / "b1.bin").exists()


def test_no_wifi_builds_an_image_without_one_and_says_so(server_env: FleetServer,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "w1.bin"
    result = factory_image(server_env, tmp_path, "--pole", "W-1", "--out", str(out),
                           "--no-wifi")
    assert result.exit_code == 0, result.output
    assert "the images hold no wifi.json" in " ".join(result.output.split())
    assert "wifi.json" not in image_files(out)


def test_a_world_readable_wifi_file_gets_a_note(server_env: FleetServer, tmp_path: Path) -> None:
    loose = write(tmp_path, f"ssid=Kade\npassword={PASSWORD}\n")
    loose.chmod(0o644)
    out = tmp_path / "r1.bin"
    result = factory_image(server_env, tmp_path, "--pole", "R-1", "--out", str(out),
                           "--wifi", str(loose))
    assert result.exit_code == 0, result.output
    assert f"chmod 600 {loose}" in " ".join(result.output.split())
    assert PASSWORD not in result.output
    assert json.loads(image_files(out)["wifi.json"])["password"] == PASSWORD


# --- provisioning an ESP32 over its REPL (a node that answers like one) ---------------------

class Esp32Node:
    """Stands in for NodeLink: an ESP32's filesystem, answering provision()'s calls."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.writes: list[str] = []
        self.written: list[bytes] = []

    def exec_json(self, code: str, timeout: float = 30) -> Any:
        assert "node_state" in code
        return {"platform": "esp32", "identity": None, "marker": None}

    def hashes(self, paths: list[str]) -> dict[str, str | None]:
        return {p: provisioning.sha256_hex(self.files[p]) if p in self.files else None
                for p in paths}

    def write_file(self, path: str, data: bytes) -> None:
        self.files[path] = data
        self.writes.append(path)
        self.written.append(data)

    def remove(self, path: str) -> None:
        self.files.pop(path, None)

    def selftest(self) -> dict[str, Any]:
        return {"board": "esp32_devkitc", "sensors": {}}

    def close(self) -> None:
        pass


@pytest.fixture
def esp32(monkeypatch: pytest.MonkeyPatch) -> Esp32Node:
    node = Esp32Node()
    monkeypatch.setattr(provisioning, "NodeLink", lambda port, baud=115200: node)
    return node


def provision(server: FleetServer, *args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["device", "provision", "--port", "/dev/null", "--pole",
                                    "E-7", "--server", server.url, "--token",
                                    server.operator_token, "--no-selftest", *args], input=stdin)


def test_an_esp32_without_a_terminal_or_a_file_is_refused_before_registering(
        server_env: FleetServer, esp32: Esp32Node) -> None:
    result = provision(server_env)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "this node (board esp32_devkitc) needs the street's Wi-Fi network" in said
    assert "--wifi FILE" in said and "--no-wifi" in said
    assert devices(server_env) == [] and esp32.files == {}


def test_provision_writes_wifi_json_before_the_identity_and_never_shows_it(
        server_env: FleetServer, esp32: Esp32Node, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    path = write(tmp_path, json.dumps({"ssid": "Kade-Noord", "password": PASSWORD}))
    result = provision(server_env, "--wifi", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(esp32.files["wifi.json"]) == {"ssid": "Kade-Noord", "password": PASSWORD}
    assert esp32.writes.index("wifi.json") < esp32.writes.index("identity.json")
    assert "provisioning.json" not in esp32.files  # finished
    assert "Wi-Fi network 'Kade-Noord'" in " ".join(result.output.split())
    assert PASSWORD not in result.output and PASSWORD not in caplog.text
    # the half-done marker (written first, removed last) lists the file, never its content
    assert esp32.writes[0] == "provisioning.json"
    assert "wifi.json" in json.loads(esp32.written[0])["files"]
    assert [p for p, d in zip(esp32.writes, esp32.written, strict=True)
            if PASSWORD.encode() in d] == ["wifi.json"]


def test_provision_asks_on_a_terminal_before_writing_anything(
        server_env: FleetServer, esp32: Esp32Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wifi, "stdin_is_terminal", lambda: True)
    result = provision(server_env, stdin=f"Kade-Zuid\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert json.loads(esp32.files["wifi.json"]) == {"ssid": "Kade-Zuid", "password": PASSWORD}
    said = " ".join(result.output.split())
    assert "this node (board esp32_devkitc) joins the street's Wi-Fi" in said
    assert PASSWORD not in result.output


def test_no_wifi_provisions_an_esp32_without_one(server_env: FleetServer,
                                                 esp32: Esp32Node) -> None:
    result = provision(server_env, "--no-wifi")
    assert result.exit_code == 0, result.output
    assert "identity.json" in esp32.files and "wifi.json" not in esp32.files
