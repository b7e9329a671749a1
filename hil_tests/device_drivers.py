"""Scenario drivers in MicroPython 1.9 syntax, run unchanged on a board and on the host."""

# Each string is one run on the board (one top-level definition or a few tiny statements), so
# it compiles inside the micro:bit's heap. Definitions go through the echo-checked path; a data
# batch carries every number it depends on inside the list that _ok checks. The drivers print
# one line per sample (or per change) and floats as the 8 bytes of a double, so the host reads
# the board's values exactly.

IMPORT_STRUCT = """\
try:
    import ustruct as _st
except ImportError:
    import struct as _st
"""

FLOAT_CODEC = """\
def _f(v):
    if v is None:
        return 'N'
    return 'f%x.%x.%x.%x' % _st.unpack('<HHHH', _st.pack('<d', v))
"""

# _ok checks a data batch against its length and a position-sensitive checksum computed on
# the host: a batch that lost bytes on the way but still parses (two numbers run together)
# raises "garbled batch" before any state changes, and the harness sends it again.
BATCH_CHECK = """\
def _ok(b, n, c):
    h = len(b)
    for v in b:
        h = (h * 31 + (7 if v is None else v)) % 65521
    if len(b) != n or h != c:
        raise ValueError('garbled batch')
"""

# Runs every scenario starts with, one definition each.
PRELUDE = (IMPORT_STRUCT, FLOAT_CODEC, BATCH_CHECK)

FILTER_SETUP = """\
def _fset(cfg):
    global _p, _s
    _p = pipeline_from_config(cfg)
    _s = SpikeFilter(cfg['window'], cfg['k'], cfg['min_mad'])
"""

# b: [t0_ms, dt_ms, sample, ...], each sample an integer n standing for n / 256 (exact in
# float32), or None for a failed read. One line per sample: spike-filter output, spikes
# replaced so far, reported (1/0), EMA value.
FILTER_RUN = """\
def _frun(b, n, c):
    _ok(b, n, c)
    t = b[0]
    dt = b[1]
    for k in range(2, len(b)):
        s = None
        x = None
        if b[k] is not None:
            x = b[k] / 256
            s = _s.update(x)
        r = _p.push(t, x)
        print(_f(s), _p.rejected, 0 if r is None else 1, _f(_p.last))
        t += dt
"""

OCCUPANCY_SETUP = """\
def _oset(debounce, hold):
    global _o, _ot
    _o = Occupancy(debounce, hold)
    _ot = 0
"""

# batch: [dt_ms, code, dt_ms, code, ...] with code = pir + 2 * radar (radar 0 absent,
# 1 present, 2 faulty/None). One line per sample: occupied and debounced PIR as two digits;
# then "C <events since last take_count> <events since start>".
OCCUPANCY_RUN = """\
def _orun(batch, n, c):
    global _ot
    _ok(batch, n, c)
    i = 0
    while i < len(batch):
        _ot += batch[i]
        c = batch[i + 1]
        r = c >> 1
        _o.update(_ot, c & 1, None if r == 2 else r == 1)
        print('%d%d' % (int(_o.occupied), _o.pir_level))
        i += 2
    print('C', _o.take_count(), _o.total_events)
"""

DAY_SETUP = """\
def _dset(cfg, schedule, debounce, hold, rated_w):
    global _dp, _do, _dl, _dt, _dw
    _dp = DimmingPolicy(cfg['dusk_lux'], cfg['dawn_lux'], cfg['dim_level'], cfg['full_level'],
                        cfg['ramp_up_ms'], cfg['ramp_down_ms'], schedule, cfg['confirm_ms'])
    _do = Occupancy(debounce, hold)
    _dl = None
    _dt = 0
    _dw = rated_w
"""

# b: [first sample's index, dt_ms, sample, ...], one int per sample: lux16 * 16 + flags,
# where lux16 is lux * 16 and a negative value means the light sensor gave nothing;
# flags: 1 PIR, 2 radar presence, 4 a sensor fault reported, 8 radar faulty (None).
# Prints "<sample> <level> <ramp_ms> <day/night> <occupied>" whenever one of them changes,
# then "E <µWh used in this batch> <presence events in this batch>". The levels are summed as
# integers and energy_wh (linear in the level) is called once per batch, so the energy figure
# carries one call's rounding rather than a float32 running sum's. Printing whole µWh (not
# _f) keeps ustruct and _f off the heap, which this scenario needs: 1e-6 Wh is far below
# the float tolerance.
DAY_STEP = """\
def _dstep(i, v, dt):
    global _dl, _dt
    c = v & 15
    occ = _do.update(_dt, c & 1, None if c & 8 else (c & 2) == 2)
    lux = None if v < 0 else (v >> 4) / 16
    lv, ramp = _dp.decide(_dt, lux, occ, (c & 4) == 4, (_dt // 60000) % 1440)
    now = (lv, ramp, _dp.state, occ)
    if now != _dl:
        print(i, lv, ramp, _dp.state, int(occ))
        _dl = now
    _dt += dt
    return lv
"""

DAY_RUN = """\
def _drun(b, n, c):
    _ok(b, n, c)
    i = b[0]
    dt = b[1]
    s = 0
    for k in range(2, len(b)):
        s += _dstep(i, b[k], dt)
        i += 1
    print('E', int(energy_wh(s, dt, _dw) * 1000000), _do.take_count())
"""
