"""Peripheral models on the host: BME280 inversion, PMS5003 and LD2410 frames, VEML7700 counts."""

import struct

import pytest

from tools.emulator.models import bme280
from tools.emulator.models.ld2410 import report_frame
from tools.emulator.models.pms5003 import frame
from tools.emulator.models.veml7700 import Veml7700Model, lux_per_count


@pytest.mark.parametrize(("t", "p", "h"), [(-20.0, 960.0, 95.0), (7.3, 1008.2, 75.4),
                                           (38.9, 1035.0, 12.0)])
def test_bme280_raw_values_compensate_back_to_the_truth(t, p, h):
    adc_t, adc_p, adc_h = bme280.raw_for(t, p, h)
    t100, t_fine = bme280.compensate_t(adc_t, bme280.CALIB)
    assert abs(t100 / 100 - t) <= 0.01
    assert abs(bme280.compensate_p(adc_p, t_fine, bme280.CALIB) / 25600 - p) <= 0.02
    assert abs(bme280.compensate_h(adc_h, t_fine, bme280.CALIB) / 1024 - h) <= 0.02


def test_bme280_register_map_has_chip_id_and_calibration_layout():
    m = bme280.Bme280Model(lambda: (20.0, 1000.0, 50.0))
    assert m.read(0xD0, 1) == b"\x60"
    t1 = int.from_bytes(m.read(0x88, 2), "little")
    assert t1 == bme280.CALIB["T1"]
    assert m.read(0xF7, 8)[:3] == b"\x80\x00\x00"  # nothing measured while asleep
    m.write(0xF4, b"\x27")
    assert m.read(0xF7, 8)[:3] != b"\x80\x00\x00"
    m.fault = "wrong_id"
    assert m.read(0xD0, 1) == b"\x58"


def test_pms5003_frame_is_32_bytes_with_a_valid_checksum():
    f = frame(5, 12, 18, (100, 50, 10, 2, 1, 0))
    assert len(f) == 32 and f[:2] == b"\x42\x4d" and struct.unpack(">H", f[2:4])[0] == 28
    assert sum(f[:30]) & 0xFFFF == struct.unpack(">H", f[30:])[0]
    bad = frame(5, 12, 18, (100, 50, 10, 2, 1, 0), bad_checksum=True)
    assert sum(bad[:30]) & 0xFFFF != struct.unpack(">H", bad[30:])[0]


def test_ld2410_report_frame_layout():
    f = report_frame(1, 230, 60, 0, 0, 230)
    assert f[:4] == b"\xf4\xf3\xf2\xf1" and f[-4:] == b"\xf8\xf7\xf6\xf5"
    assert struct.unpack("<H", f[4:6])[0] == 13 and len(f) == 23
    assert f[6:9] == b"\x02\xaa\x01" and struct.unpack("<H", f[9:11])[0] == 230


def test_veml7700_counts_scale_with_gain_and_integration_time():
    assert lux_per_count((0b01 << 11) | (0b0011 << 6)) == pytest.approx(0.0036)
    m = Veml7700Model(lambda: 1000.0)
    m.write(0, ((0b10 << 11) | (0b0000 << 6)).to_bytes(2, "little"))  # gain 1/8, 100 ms
    counts = int.from_bytes(m.read(4, 2), "little")
    assert counts == pytest.approx(1000.0 / 0.4608, rel=0.02)


def test_a_full_uart_buffer_loses_whole_frames_never_cut_ones():
    """A node that has not read for a while (at high emulation speed, its own computing times
    the speed) finds whole frames in the buffer, never a frame cut at the buffer's end."""
    from tools.emulator.models.uart import UartChannel

    class Device:
        fault = None

        def emit(self, now_ms):
            return frame(1, 2, 3, (0,) * 6)  # a PMS5003 frame, 32 bytes

    whole = len(frame(1, 2, 3, (0,) * 6))
    ch = UartChannel(Device(), period_ms=100, rx_capacity=100)
    ch.advance(0)
    ch.advance(3_000)  # 31 frames due (0 ms to 3000 ms); room for 3
    assert len(ch.rx) == 3 * whole
    assert ch.overflowed == 28 * whole
    assert bytes(ch.rx) == frame(1, 2, 3, (0,) * 6) * 3
