"""Street occupancy from a PIR level and mmWave radar presence: debounce, hold, event count."""

# MicroPython 1.9 syntax only: this module also runs on the bare-metal micro:bit build.


class Occupancy:
    # Fuses PIR and radar into one occupied flag.
    #
    # - The PIR level is debounced: a change must persist `debounce_ms` before it counts.
    # - The radar's presence flag is taken as is (the radar filters internally); None means the
    #   radar is faulty and only the PIR is used.
    # - Occupied holds `hold_ms` after the last evidence (debounced PIR high or radar presence).
    # - Every empty -> occupied transition is one presence event.

    def __init__(self, debounce_ms=200, hold_ms=30000):
        self.debounce_ms = debounce_ms
        self.hold_ms = hold_ms
        self.occupied = False
        self.events = 0  # presence events since the last take_count()
        self.total_events = 0
        self.pir_level = 0  # debounced PIR level
        self._pir_raw = 0
        self._pir_raw_since = None
        self._last_evidence_ms = None

    def _debounce_pir(self, now_ms, pir):
        pir = 1 if pir else 0
        if pir != self._pir_raw or self._pir_raw_since is None:
            self._pir_raw = pir
            self._pir_raw_since = now_ms
        if pir != self.pir_level and now_ms - self._pir_raw_since >= self.debounce_ms:
            self.pir_level = pir
        return self.pir_level

    def update(self, now_ms, pir, radar):
        # Feed the current PIR level (0/1) and radar presence (True/False/None).
        pir_on = self._debounce_pir(now_ms, pir)
        if pir_on or radar:  # radar None (faulty) counts as no evidence
            self._last_evidence_ms = now_ms
            if not self.occupied:
                self.occupied = True
                self.events += 1
                self.total_events += 1
        elif self.occupied and now_ms - self._last_evidence_ms >= self.hold_ms:
            self.occupied = False
        return self.occupied

    def take_count(self):
        # Presence events since the previous call (the counter restarts at zero).
        n = self.events
        self.events = 0
        return n
