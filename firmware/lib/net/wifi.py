"""Keeps the Wi-Fi station up: connect with a timeout, back off exponentially, reconnect."""

from micropython import const

_CONNECT_TIMEOUT_MS = const(15000)  # association and DHCP
_FIRST_BACKOFF_MS = const(2000)
_MAX_BACKOFF_MS = const(300000)  # a street whose access point is gone is tried every 5 min
_GOT_IP = const(1010)  # network.STAT_GOT_IP
_IDLE = const(1000)  # network.STAT_IDLE, just after connect() on some ports
_CONNECTING = const(1001)  # network.STAT_CONNECTING
# network.STAT_* codes a failed attempt leaves, named in the log (the rest by number)
_CODES = const((200, 201, 202, 203, 204, _CONNECTING))
_REASONS = const(("beacon_timeout", "no_ap_found", "wrong_password", "association_failed",
                  "handshake_timeout", "connect_timeout"))
# The object's state (`state`): never up yet, up, or down after having been up
_NEVER = const(0)
_UP = const(1)
_DOWN = const(2)


def _reason(code):
    return _REASONS[_CODES.index(code)] if code in _CODES else code


class Wifi:
    """The station interface `wlan` (network.WLAN or the emulated board's), joined to the
    network named in `data` ({"ssid", "password"}, the provisioned /wifi.json).

    poll(now) is called from the node's loop and never blocks: it starts an attempt, notices
    that one succeeded, failed or timed out, or that the link dropped, and schedules the next
    attempt 2 s, 4 s, … up to 5 min later. The passphrase is only ever handed to connect().
    Private attributes reuse names the interpreter already interns (docs/architecture.md).
    """

    def __init__(self, wlan, data, log):
        self.wlan = wlan
        self.ssid = data["ssid"]
        self.key = data.get("password", "")
        self.log = log
        self.state = _NEVER
        self.reconnects = 0  # links re-established after one was lost (reported at check-ins)
        self.rssi = None  # dBm while up
        self.start = None  # ticks of the attempt under way
        self.next = 0  # ticks of the next attempt
        self.timeout = _FIRST_BACKOFF_MS  # the wait after the next failure

    def isconnected(self):
        return self.state == _UP

    def poll(self, now):
        """Advance the connection by what happened since the last call; True while up."""
        wlan = self.wlan
        if wlan.isconnected():
            self.rssi = wlan.status("rssi")
            if self.state != _UP:
                if self.state == _DOWN:
                    self.reconnects += 1
                self.state = _UP
                self.log.info("wifi_up", ssid=self.ssid, rssi=self.rssi, count=self.reconnects)
                self.start = None
                self.timeout = _FIRST_BACKOFF_MS
            return True
        if self.state == _UP:
            self.state = _DOWN
            self.rssi = None
            self.log.warn("wifi_lost", reason=_reason(wlan.status()))
            self.next = now
        start = self.start
        if start is not None:
            status = wlan.status()
            if (status == _CONNECTING or status == _IDLE) and now - start < _CONNECT_TIMEOUT_MS:
                return False
            self.log.warn("wifi_connect_failed", reason=_reason(status),
                          retry_s=self.timeout // 1000)
            wlan.disconnect()
            self.start = None
            self.next = now + self.timeout
            self.timeout = min(self.timeout * 2, _MAX_BACKOFF_MS)
        elif now >= self.next:
            self.start = now
            wlan.connect(self.ssid, self.key)
        return False
