"""The node's link to the fleet server: identity and clock offset; each exchange's code is
loaded for that exchange (uplink_exchange.py) and dropped again."""

from core import ondemand


class Uplink:
    """Signs every request with the device key (HMAC-SHA256 over method, path, time, nonce, body).

    Only the link's state stays resident; signing and HTTP are loaded per exchange. `http`
    is a client to use instead of a new http_client.HttpClient per exchange (for tests).
    An https server must present a certificate the fleet CA pinned at `root`/fleet_ca.der
    signed; an http:// server is refused unless the identity says "insecure_http": true.
    """

    def __init__(self, identity, clock_s, log=None, http=None, root=""):
        self.device_id = identity["device_id"]
        self.secret = identity["secret"]  # hex
        self.server = identity["server"]
        self.insecure_http = identity.get("insecure_http", False)
        self.root = root  # the flash root: the pinned CA, the identity (rewritten on rotation)
        self.http = http
        self.addr = None  # the server's resolved address, kept between exchanges
        self.clock_s = clock_s
        self.offset_s = 0  # learned from the server's X-Server-Time when the node's clock is off
        self.log = log
        self.last_status = None

    def checkin(self, status):
        """Send the node's status; return the server's reply dict, or None when refused."""
        # the exchange's code (signing, HTTP) is dropped afterwards unless loaded before
        return ondemand.call("net.uplink_exchange", "checkin", self, status)

    def post_telemetry(self, records):
        """Upload (seq, payload) records; return the highest seq the server holds.

        Raises uplink_exchange.Rejected on a 4xx about the records' content.
        """
        return ondemand.call("net.uplink_exchange", "post_telemetry", self, records)

    def server_time(self):
        """The fleet server's time (UTC s) from a reply signed for this request, asked without
        a timestamp (the node's clock is unset); raises on failure."""
        return ondemand.call("net.uplink_exchange", "server_time", self)

    def get(self, path, headers, sink, deadline_s=None):
        """A signed GET whose body goes to `sink` (http_client.HttpClient.request); `headers`
        (or None) are added; `deadline_s` bounds the whole exchange."""
        return ondemand.call("net.uplink_exchange", "get", self, path, headers, sink, deadline_s)
