"""Per-metric signal filters: Hampel spike rejection, EMA smoothing, report-on-change."""

# MicroPython 1.9 syntax only: this module also runs on the bare-metal micro:bit build.

MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian times this is its standard deviation

# Scratch space for the medians, shared by every SpikeFilter (its contents never outlive one
# update(), and updates do not interleave): one list instead of one per metric. It grows to
# the largest window in use.
_WORK = [0.0] * 15


class SpikeFilter:
    # Causal Hampel filter over the last `window` raw samples (the newest included).
    #
    # A sample is a spike when |x - median| > k * 1.4826 * max(MAD, min_mad); a spike is
    # replaced by the window median. Raw samples (spikes too) enter the window, so a genuine
    # step becomes the median after window // 2 + 1 samples and is followed from then on.
    # `min_mad` (same unit as the signal) stops a perfectly flat or quantised signal from
    # turning every tiny change into a "spike".

    def __init__(self, window=5, k=3.0, min_mad=0.01):
        if window < 3:
            raise ValueError("window must be >= 3")
        self.window = window
        self.k = k
        self.min_mad = min_mad
        self.rejected = 0
        self.ring = [0.0] * window
        if window > len(_WORK):
            _WORK.extend([0.0] * (window - len(_WORK)))
        self.next = 0
        self.count = 0

    def reset(self):
        self.next = 0
        self.count = 0

    def _median_of_work(self, n):
        work = _WORK
        # insertion sort of the first n entries: n is tiny, no allocation
        for i in range(1, n):
            v = work[i]
            j = i - 1
            while j >= 0 and work[j] > v:
                work[j + 1] = work[j]
                j -= 1
            work[j + 1] = v
        mid = n // 2
        if n % 2:
            return work[mid]
        return (work[mid - 1] + work[mid]) * 0.5

    def update(self, x):
        x = float(x)
        ring = self.ring
        ring[self.next] = x
        self.next = (self.next + 1) % self.window
        if self.count < self.window:
            self.count += 1
        n = self.count
        if n < 3:
            return x
        work = _WORK
        for i in range(n):
            work[i] = ring[i]
        median = self._median_of_work(n)
        for i in range(n):
            d = ring[i] - median
            work[i] = d if d >= 0 else -d
        mad = self._median_of_work(n)
        if mad < self.min_mad:
            mad = self.min_mad
        dev = x - median
        if dev < 0:
            dev = -dev
        if dev > self.k * MAD_TO_SIGMA * mad:
            self.rejected += 1
            return median
        return x


class ReportOnChange:
    # Says when a value is worth reporting: moved beyond a deadband, or heartbeat due.
    #
    # The deadband is the larger of `deadband` (absolute, in the metric's unit) and
    # `deadband_rel` times the last reported value's magnitude (for wide-range metrics such as
    # lux or particulates, where a fixed band is too fine at high values or too coarse at low).

    def __init__(self, deadband, heartbeat_ms, deadband_rel=0.0):
        self.deadband = deadband
        self.deadband_rel = deadband_rel
        self.heartbeat_ms = heartbeat_ms
        self.last_value = None
        self.last_ms = 0

    def check(self, now_ms, value):
        last = self.last_value
        if last is not None:
            moved = value - last
            if moved < 0:
                moved = -moved
            band = self.deadband_rel * (last if last >= 0 else -last)
            if band < self.deadband:
                band = self.deadband
            if moved <= band and now_ms - self.last_ms < self.heartbeat_ms:
                return False
        self.last_value = value
        self.last_ms = now_ms
        return True


class MetricPipeline(SpikeFilter, ReportOnChange):
    # Spike rejection, then EMA smoothing, then report-on-change, for one metric.
    #
    # One object holds all three stages' state (a node keeps one per metric): the spike
    # filter's window and `rejected` count, the EMA in `last` (the first sample initialises
    # it; then last += alpha * (x - last)), and the last reported value and time.

    def __init__(self, spike_window=5, spike_k=3.0, alpha=0.3, deadband=0.2,
                 heartbeat_ms=900000, min_mad=0.01, deadband_rel=0.0):
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        SpikeFilter.__init__(self, spike_window, spike_k, min_mad)
        ReportOnChange.__init__(self, deadband, heartbeat_ms, deadband_rel)
        self.alpha = alpha
        self.last = None  # the smoothed value (EMA) after the latest reading

    def push(self, now_ms, raw):
        # Feed one raw reading; return the value to report now, or None.
        if raw is None:
            return None
        x = self.update(raw)
        if self.last is None:
            self.last = x
        else:
            self.last += self.alpha * (x - self.last)
        if self.check(now_ms, self.last):
            return self.last
        return None


def pipeline_from_config(metric_cfg):
    # Build a MetricPipeline from a config dict (window, k, alpha, deadband, heartbeat_s).
    #
    # Optional keys: min_mad (spike filter MAD floor), deadband_rel (relative deadband).
    return MetricPipeline(
        spike_window=metric_cfg["window"],
        spike_k=metric_cfg["k"],
        alpha=metric_cfg["alpha"],
        deadband=metric_cfg["deadband"],
        heartbeat_ms=int(metric_cfg["heartbeat_s"] * 1000),
        min_mad=metric_cfg.get("min_mad", 0.01),
        deadband_rel=metric_cfg.get("deadband_rel", 0.0),
    )
