"""The street's Wi-Fi access point as the node's station interface sees it (network.WLAN)."""

from __future__ import annotations

from collections.abc import Callable

# network.WLAN.status() codes of MicroPython's ESP32 port (ports/esp32/network_wlan.c)
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203

WEAK_RSSI_DBM = -87
_WEAK_ASSOC_FACTOR = 4


class AccessPoint:
    """One station's view of the access point, in virtual time.

    `fault(ms)` names the scenario's network fault in force (None, "association_fails",
    "link_lost" or "weak_signal"). A link that was up drops when association_fails or
    link_lost begins, and stays down (as on the ESP32 port with its own reconnects off) until
    the node calls connect() again and the association completes.
    """

    def __init__(self, fault: Callable[[int], str | None], rssi_dbm: int, assoc_ms: int,
                 password: str | None) -> None:
        self.fault = fault
        self.rssi_dbm = rssi_dbm
        self.assoc_ms = assoc_ms
        self.password = password
        self.status = STAT_IDLE
        self.used = False  # the node has brought its radio up since it booted
        self._since_ms = 0
        self._password_ok = True
        self.associations = 0  # completed associations (for tests)

    def reset(self) -> None:
        """The node rebooted: its radio starts idle."""
        self.status = STAT_IDLE
        self.used = False

    def connect(self, now_ms: int, ssid: str, password: str) -> None:
        self.used = True
        self.status = STAT_CONNECTING
        self._since_ms = now_ms
        self._password_ok = self.password is None or password == self.password

    def disconnect(self) -> None:
        self.status = STAT_IDLE

    def poll(self, now_ms: int) -> int:
        """The station's status now (network.WLAN.status())."""
        fault = self.fault(now_ms)
        down = fault in ("association_fails", "link_lost")
        if self.status == STAT_GOT_IP and down:
            self.status = STAT_BEACON_TIMEOUT
        elif self.status == STAT_CONNECTING:
            need = self.assoc_ms * (_WEAK_ASSOC_FACTOR if fault == "weak_signal" else 1)
            if now_ms - self._since_ms >= need:
                if not self._password_ok:
                    self.status = STAT_WRONG_PASSWORD
                elif fault == "association_fails":
                    self.status = STAT_ASSOC_FAIL
                elif fault == "link_lost":
                    self.status = STAT_NO_AP_FOUND
                else:
                    self.status = STAT_GOT_IP
                    self.associations += 1
        return self.status

    def connected(self, now_ms: int) -> bool:
        return self.poll(now_ms) == STAT_GOT_IP

    def linked(self, now_ms: int) -> bool:
        """The node can reach the network: its Wi-Fi is up, or it never used Wi-Fi (wired)."""
        return not self.used or self.connected(now_ms)

    def rssi(self, now_ms: int) -> int:
        return WEAK_RSSI_DBM if self.fault(now_ms) == "weak_signal" else self.rssi_dbm
