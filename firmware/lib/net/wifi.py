"""Keeps the Wi-Fi station up: connect with a timeout, back off exponentially, reconnect."""

from micropython import const

_CONNECT_TIMEOUT_MS = const(15000)  # association and DHCP
_FIRST_BACKOFF_MS = const(2000)
_MAX_BACKOFF_MS = const(300000)  # a street whose access point is gone is tried every 5 min
_GOT_IP = const(1010)  # network.STAT_GOT_IP
_CONNECTING = const(1001)  # network.STAT_CONNECTING (STAT_IDLE, 1000, just after connect())
# network.STAT_* codes a failed attempt leaves, named in the log (the rest by number)
_REASONS = {200: "beacon_timeout", 201: "no_ap_found", 202: "wrong_password",
            203: "assoc_fail", 204: "handshake_timeout", _CONNECTING: "timeout"}


class Wifi:
    """The station interface `wlan` (network.WLAN or the emulated board's), joined to `ssid`.

    poll(now) is called from the node's loop and never blocks: it starts an attempt, notices
    that one succeeded, failed or timed out, or that the link dropped, and schedules the next
    attempt 2 s, 4 s, … up to 5 min later. The passphrase is only ever handed to connect().
    """

    def __init__(self, wlan, creds, log):
        self.wlan = wlan
        self.ssid = creds["ssid"]
        self._key = creds.get("password", "")
        self.log = log
        self.up = False
        self.reconnects = 0  # links re-established after one was lost (reported at check-ins)
        self.rssi = None  # dBm while up
        self._was_up = False
        self._started = None  # ticks of the attempt under way
        self._next = 0
        self._backoff = _FIRST_BACKOFF_MS

    def poll(self, now):
        """Advance the connection by what happened since the last call; True while up."""
        wlan = self.wlan
        if wlan.isconnected():
            self.rssi = wlan.status("rssi")
            if not self.up:
                self.up = True
                if self._was_up:
                    self.reconnects += 1
                self._was_up = True
                self.log.info("wifi_up", ssid=self.ssid, rssi=self.rssi,
                              reconnects=self.reconnects)
                self._started = None
                self._backoff = _FIRST_BACKOFF_MS
            return True
        if self.up:
            self.up = False
            self.rssi = None
            self.log.warn("wifi_lost", reason=self._reason())
            self._next = now
        started = self._started
        if started is not None:
            status = wlan.status()
            if status in (_CONNECTING, 1000) and now - started < _CONNECT_TIMEOUT_MS:
                return False
            self.log.warn("wifi_connect_failed", reason=self._reason(status),
                          retry_s=self._backoff // 1000)
            wlan.disconnect()
            self._started = None
            self._next = now + self._backoff
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF_MS)
        elif now >= self._next:
            self._started = now
            wlan.connect(self.ssid, self._key)
        return False

    def _reason(self, status=None):
        if status is None:
            status = self.wlan.status()
        return _REASONS.get(status, status)
