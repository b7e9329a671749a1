"""The metric catalogue: every telemetry metric's unit, accepted range and meaning."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    """One metric a node reports: name on the wire, unit, accepted range and what it means."""

    name: str
    unit: str
    low: float
    high: float
    meaning: str
    source: str
    integer: bool = False

    def accepts(self, value: float) -> bool:
        """Whether `value` (already known finite) lies in range and, if needed, is whole."""
        if not self.low <= value <= self.high:
            return False
        return not self.integer or value == int(value)

    def range_text(self) -> str:
        """The accepted range with its unit, for error messages and docs."""
        whole = ", whole numbers" if self.integer else ""
        return f"{self.low:g}..{self.high:g} {self.unit}{whole}"


CATALOGUE: dict[str, Metric] = {m.name: m for m in (
    Metric("temperature_c", "°C", -40, 85,
           "Air temperature at the lamppost head, filtered on the node.", "BME280"),
    Metric("humidity_pct", "%RH", 0, 100,
           "Relative humidity of the air, filtered on the node.", "BME280"),
    Metric("pressure_hpa", "hPa", 300, 1100,
           "Barometric air pressure at the node's height (not reduced to sea level).", "BME280"),
    Metric("pm25_ugm3", "µg/m³", 0, 1000,
           "Mass concentration of particles below 2.5 µm (PM2.5, atmospheric environment).",
           "PMS5003"),
    Metric("pm10_ugm3", "µg/m³", 0, 1000,
           "Mass concentration of particles below 10 µm (PM10, atmospheric environment).",
           "PMS5003"),
    Metric("lux", "lx", 0, 120000, "Ambient illuminance seen by the upward light sensor.",
           "VEML7700"),
    Metric("presence_count", "events per reporting interval", 0, 10000,
           "Presence detections (PIR and mmWave radar, debounced) during the reporting interval "
           "that ends at ts.", "PIR + LD2410", integer=True),
    Metric("lamp_level_pct", "%", 0, 100,
           "Lamp output level the node commanded at ts (0 = off, 100 = full).", "lamp driver"),
    Metric("energy_wh", "Wh per reporting interval", 0, 100000,
           "Energy the lamp used during the reporting interval that ends at ts.", "lamp driver"),
)}

METRIC_NAMES: tuple[str, ...] = tuple(CATALOGUE)


def unit_of(metric: str) -> str:
    """The unit of a metric ("" for a name outside the catalogue)."""
    found = CATALOGUE.get(metric)
    return found.unit if found else ""


def catalogue_json() -> list[dict[str, Any]]:
    """The catalogue as plain dictionaries (served at /api/v1/telemetry/metrics)."""
    return [asdict(m) for m in CATALOGUE.values()]
