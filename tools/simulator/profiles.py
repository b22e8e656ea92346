"""What a simulated house does over time: appliance power profiles, the sun, gas and water.

Every profile is a pure function of time, vectorised over arrays of Unix times and
deterministic given a seed: the same instant gives the same value whether it is asked for
inside a 1-second waveform frame or a 14-day history backfill, in any order. Randomness comes
from two sources that allow random access by time:

* :func:`hash_uniform` -- a SplitMix64 hash of (seed, stream, integer index), for smooth noise
  (:func:`smooth_noise`) and per-cycle values;
* :class:`DailyEvents` -- the same hash of (seed, stream, local day, draw) that plans each
  day's events (an EV session, showers, a door opening), many days at once.

Powers are in watts, consumption positive; flows are in SI-ish base units per second (m3 of
gas, litres of water, kWh of electricity). Nothing here knows about wiring or waveforms; see
:mod:`tools.simulator.house`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

DAY_S = 86_400.0
HOUR_S = 3_600.0

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK32 = 0xFFFFFFFF


def stream_id(name: str) -> int:
    """A stable 32-bit id for a random stream (``hash()`` of a str changes between runs)."""
    return zlib.crc32(name.encode("utf-8"))


def hash_uniform(seed: int, stream: int, k: np.ndarray | int) -> np.ndarray:
    """Uniform numbers in [0, 1), one per integer in ``k``: SplitMix64 of (seed, stream, k).

    Random access: ``hash_uniform(s, st, [5])`` equals element 5 of
    ``hash_uniform(s, st, np.arange(10))``.
    """
    k = np.atleast_1d(np.asarray(k, dtype=np.int64))
    key = np.uint64(((seed & _MASK32) << 32) | (stream & _MASK32))
    with np.errstate(over="ignore"):
        x = k.astype(np.uint64) * _GOLDEN + key
        x ^= x >> np.uint64(30)
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def smooth_noise(seed: int, stream: int, t: np.ndarray, period_s: float) -> np.ndarray:
    """Smooth value noise in [0, 1]: random values every ``period_s``, cosine-interpolated."""
    x = np.asarray(t, dtype=np.float64) / period_s
    k = np.floor(x)
    w = 0.5 - 0.5 * np.cos(np.pi * (x - k))
    k = k.astype(np.int64)
    a, b = hash_uniform(seed, stream, k), hash_uniform(seed, stream, k + 1)
    return a + (b - a) * w


# ------------------------------------------------------------------------------ local time


@dataclass(frozen=True)
class LocalTime:
    """Unix times and their local calendar in a time zone, element by element.

    Attributes
    ----------
    t : ndarray
        Unix seconds.
    x : ndarray
        Local seconds since 1970-01-01 00:00 local (``t`` plus the UTC offset).
    day : ndarray of int
        Local day number since 1970-01-01.
    sec : ndarray
        Seconds since local midnight.
    doy : ndarray of int
        Local day of the year, 1..366.
    weekday : ndarray of int
        0 = Monday .. 6 = Sunday.
    """

    t: np.ndarray
    x: np.ndarray
    day: np.ndarray
    sec: np.ndarray
    doy: np.ndarray
    weekday: np.ndarray

    @property
    def hour(self) -> np.ndarray:
        return self.sec / HOUR_S


def local_time(t: np.ndarray | float, tz: ZoneInfo) -> LocalTime:
    """Split Unix times into local calendar fields; UTC offsets are looked up once per hour."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    x = t + utc_offsets(t, tz)
    day = np.floor(x / DAY_S).astype(np.int64)
    days = day.astype("datetime64[D]")
    doy = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    return LocalTime(t=t, x=x, day=day, sec=x - day * DAY_S, doy=doy, weekday=(day + 3) % 7)


def _offset_s(t: float, tz: ZoneInfo) -> float:
    return datetime.fromtimestamp(t, tz).utcoffset().total_seconds()


def utc_offsets(t: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """UTC offset (s) at each Unix time: looked up once per UTC day, and hour by hour on the
    days the offset changes (zone transitions fall on whole hours)."""
    days = np.floor(t / DAY_S).astype(np.int64)
    unique_days, where = np.unique(days, return_inverse=True)
    start = np.array([_offset_s(int(d) * DAY_S, tz) for d in unique_days])
    end = np.array([_offset_s(int(d) * DAY_S + DAY_S - 1, tz) for d in unique_days])
    offsets = start[where.reshape(t.shape)]
    changing = start != end
    if changing.any():
        moving = changing[where.reshape(t.shape)]
        hours = np.floor(t[moving] / HOUR_S).astype(np.int64)
        unique_hours, back = np.unique(hours, return_inverse=True)
        hourly = np.array([_offset_s(int(h) * HOUR_S, tz) for h in unique_hours])
        offsets[moving] = hourly[back]
    return offsets


def coldness(doy: np.ndarray) -> np.ndarray:
    """0 in mid-July .. 1 in mid-January: how much heating the season asks for."""
    return 0.5 + 0.5 * np.cos(2 * np.pi * (np.asarray(doy) - 15) / 365.25)


# ---------------------------------------------------------------------------- daily events

Draw = Callable[[int], np.ndarray]
Plan = Callable[[Draw, np.ndarray, np.ndarray], Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]]
_DRAWS_PER_DAY = 128


class DailyEvents:
    """Random events drawn day by day, for many days at once.

    ``plan(u, weekday, doy)`` gets, for an array of local days, their weekday and day of year
    and ``u(j)``: the j-th uniform draw of each day (``j < 128``, a hash of seed, stream, day
    and j, so a day's events do not depend on which other days were asked for). It returns
    event slots ``(start_s, end_s, level)``, arrays over the days in seconds after local
    midnight (an event may run past midnight); a level of 0 means no event in that slot.
    """

    def __init__(self, seed: int, stream: str, plan: Plan) -> None:
        self.seed = seed & _MASK32
        self.stream = stream_id(stream)
        self.plan = plan
        self._cached: tuple[int, int, np.ndarray] | None = None

    def table(self, first: int, last: int) -> np.ndarray:
        """Events of local days ``first..last`` as an (n, 3) array: start and end in local
        seconds since 1970, level."""
        if self._cached is not None and self._cached[0] == first and self._cached[1] == last:
            return self._cached[2]
        days = np.arange(first, last + 1, dtype=np.int64)
        weekday = (days + 3) % 7
        dates = days.astype("datetime64[D]")
        doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1

        def u(j: int) -> np.ndarray:
            return hash_uniform(self.seed, self.stream, days * _DRAWS_PER_DAY + j)

        offset = days * DAY_S
        rows = []
        for start, end, level in self.plan(u, weekday, doy):
            start, end, level = np.broadcast_arrays(start, end, level)
            rows.append(np.stack([start + offset, end + offset, level], axis=1))
        events = np.concatenate(rows) if rows else np.zeros((0, 3))
        events = events[events[:, 2] != 0]
        self._cached = (first, last, events)
        return events

    def _around(self, x: np.ndarray) -> np.ndarray:
        return self.table(int(np.min(x) // DAY_S) - 1, int(np.max(x) // DAY_S))

    def level(self, lt: LocalTime) -> np.ndarray:
        """Sum of the levels of the events running at each time (overlaps add up)."""
        events = self._around(lt.x)
        if not len(events):
            return np.zeros_like(lt.x)
        by_start, by_end = np.sort(events[:, 0]), np.sort(events[:, 1])
        up = np.concatenate([[0.0], np.cumsum(events[np.argsort(events[:, 0]), 2])])
        down = np.concatenate([[0.0], np.cumsum(events[np.argsort(events[:, 1]), 2])])
        level = up[np.searchsorted(by_start, lt.x, "right")] - down[np.searchsorted(by_end, lt.x, "right")]
        level[np.abs(level) < 1e-9] = 0.0
        return level

    def cumulative(self, x: np.ndarray) -> np.ndarray:
        """Integral of the level over time (level x seconds) from an arbitrary origin up to each
        local time ``x``: differences between elements of one call are exact event integrals."""
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        events = self._around(x)
        total = np.zeros_like(x)
        for column, sign in ((0, 1.0), (1, -1.0)):
            order = np.argsort(events[:, column])
            edges, level = events[order, column], events[order, 2]
            weight = np.concatenate([[0.0], np.cumsum(level)])
            moment = np.concatenate([[0.0], np.cumsum(level * edges)])
            k = np.searchsorted(edges, x, "right")
            # sum over edges <= x of level * (x - edge): + for starts, - for ends.
            total += sign * (x * weight[k] - moment[k])
        return total

    def count_starts(self, x0: float, x1: float) -> int:
        """Events starting in the local-seconds interval (x0, x1]."""
        if x1 <= x0:
            return 0
        events = self._around(np.array([x0, x1]))
        return int(np.count_nonzero((events[:, 0] > x0) & (events[:, 0] <= x1)))


def _hours(h: float) -> float:
    return h * HOUR_S


# -------------------------------------------------------------------------------- profiles


class Profile:
    """A power profile: ``power_w(lt)`` in watts at each time of ``lt``."""

    name = "profile"

    def __init__(self, seed: int, stream: str) -> None:
        self.seed = seed & _MASK32
        self.stream = stream_id(stream)
        self.stream_name = stream

    def noise(self, t: np.ndarray, period_s: float, salt: int = 0) -> np.ndarray:
        return smooth_noise(self.seed, self.stream + salt, t, period_s)

    def power_w(self, lt: LocalTime) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Constant(Profile):
    def __init__(self, seed: int, stream: str, power_w: float) -> None:
        super().__init__(seed, stream)
        self.value_w = power_w

    def power_w(self, lt: LocalTime) -> np.ndarray:
        return np.full_like(lt.t, self.value_w)


class BaseLoad(Profile):
    """Always-on consumption: 150-250 W wandering slowly (routers, standby, ventilation)."""

    def power_w(self, lt: LocalTime) -> np.ndarray:
        return 150.0 + 80.0 * self.noise(lt.t, 900.0) + 20.0 * self.noise(lt.t, 60.0, salt=1)


class Fridge(Profile):
    """A compressor cycling about 100 W, 20 minutes on, 40 minutes off."""

    period_s = 3600.0
    on_s = 1200.0

    def power_w(self, lt: LocalTime) -> np.ndarray:
        offset = float(hash_uniform(self.seed, self.stream, 0)[0]) * self.period_s
        on = np.mod(lt.t + offset, self.period_s) < self.on_s
        return np.where(on, 95.0 + 10.0 * self.noise(lt.t, 600.0), 0.0)


class HeatPump(Profile):
    """An on/off heat pump of 1.5-3 kW cycling every 45 minutes; it runs longer cycles in
    cold months and at night, a little all year round for hot water."""

    period_s = 2700.0

    def power_w(self, lt: LocalTime) -> np.ndarray:
        offset = float(hash_uniform(self.seed, self.stream, 0)[0]) * self.period_s
        into_cycle = np.mod(lt.t + offset, self.period_s)
        cycle = np.floor((lt.t + offset) / self.period_s).astype(np.int64)
        # The thermostat decides at the start of the cycle.
        hour = np.mod(lt.sec - into_cycle, DAY_S) / HOUR_S
        night = (hour >= 22) | (hour < 6)
        cold = coldness(lt.doy)
        duty = np.clip(0.05 + 0.30 * cold + 0.12 * night * (0.3 + cold), 0.04, 0.85)
        rated = 1500.0 + 1000.0 * cold + 300.0 * (hash_uniform(self.seed, self.stream + 1, cycle) - 0.5)
        return np.where(into_cycle < duty * self.period_s, np.clip(rated, 1500.0, 3000.0), 0.0)


class ElectricVehicle(Profile):
    """Evening charging on some days: starting 18:00-19:30, 8-22 kWh at a constant power."""

    def __init__(self, seed: int, stream: str, rated_w: float) -> None:
        super().__init__(seed, stream)
        self.rated_w = rated_w
        self.sessions = DailyEvents(seed, stream, self._plan)

    def _plan(self, u: Draw, weekday: np.ndarray, doy: np.ndarray) -> list:
        charges = u(0) < np.where(weekday < 5, 0.55, 0.35)
        start = _hours(18.0 + 1.5 * u(1))
        energy_wh = 8_000.0 + 14_000.0 * u(2)
        end = np.minimum(start + energy_wh / self.rated_w * HOUR_S, _hours(23.5))
        return [(start, end, np.where(charges, self.rated_w, 0.0))]

    def power_w(self, lt: LocalTime) -> np.ndarray:
        return self.sessions.level(lt)


class Induction(Profile):
    """An induction hob: dinner around 18:00 every day, lunch around 12:00 at weekends and on
    some weekdays; zones switch between 0.8 and 3.2 kW every 90 seconds."""

    def __init__(self, seed: int, stream: str) -> None:
        super().__init__(seed, stream)
        self.sessions = DailyEvents(seed, stream, self._plan)

    @staticmethod
    def _plan(u: Draw, weekday: np.ndarray, doy: np.ndarray) -> list:
        dinner = _hours(17.75 + 0.75 * u(0))
        lunch = _hours(11.75 + 0.5 * u(2))
        lunch_level = np.where((weekday >= 5) | (u(4) < 0.3), 1.0, 0.0)
        return [
            (dinner, dinner + _hours(0.4 + 0.5 * u(1)), 1.0),
            (lunch, lunch + _hours(0.3 + 0.3 * u(3)), lunch_level),
        ]

    def power_w(self, lt: LocalTime) -> np.ndarray:
        cooking = self.sessions.level(lt) > 0
        step = np.floor(lt.t / 90.0).astype(np.int64)
        level = 800.0 + 2400.0 * hash_uniform(self.seed, self.stream + 1, step)
        paused = hash_uniform(self.seed, self.stream + 2, step) < 0.12
        return np.where(cooking & ~paused, level, 0.0)


class Kettle(Profile):
    """A 2 kW kettle for three minutes around 07:00."""

    def __init__(self, seed: int, stream: str) -> None:
        super().__init__(seed, stream)
        self.boils = DailyEvents(seed, stream, self._plan)

    @staticmethod
    def _plan(u: Draw, weekday: np.ndarray, doy: np.ndarray) -> list:
        start = _hours(6.7 + u(0) * np.where(weekday >= 5, 1.1, 0.7))
        return [(start, start + 180.0, 2000.0)]

    def power_w(self, lt: LocalTime) -> np.ndarray:
        return self.boils.level(lt)


class Boiler(Profile):
    """An electric water heater of 2.2 kW: heats on the night tariff from about 23:00 for
    1-2.5 hours, and on some mornings after the showers."""

    rated_w = 2200.0

    def __init__(self, seed: int, stream: str) -> None:
        super().__init__(seed, stream)
        self.heating = DailyEvents(seed, stream, self._plan)

    def _plan(self, u: Draw, weekday: np.ndarray, doy: np.ndarray) -> list:
        night = _hours(23.0 + 0.5 * u(0))
        morning = _hours(8.0 + 0.5 * u(2))
        return [
            (night, night + _hours(1.0 + 1.5 * u(1)), self.rated_w),
            (morning, morning + _hours(0.25 + 0.35 * u(3)), np.where(u(4) < 0.5, self.rated_w, 0.0)),
        ]

    def power_w(self, lt: LocalTime) -> np.ndarray:
        return self.heating.level(lt)


class PoolPump(Profile):
    """A 400 W pump running 10:00-16:00 from May to September."""

    def power_w(self, lt: LocalTime) -> np.ndarray:
        season = (lt.doy >= 121) & (lt.doy < 274)
        return np.where(season & (lt.hour >= 10) & (lt.hour < 16), 400.0, 0.0)


# Daily shape of a generic circuit (lighting, sockets): relative activity by local hour.
_GENERIC_HOURS = np.array([0.0, 6.0, 7.0, 9.0, 12.0, 17.0, 19.0, 22.0, 23.5, 24.0])
_GENERIC_SHAPE = np.array([0.05, 0.05, 0.6, 0.3, 0.35, 0.5, 1.0, 0.8, 0.1, 0.05])


class GenericCircuit(Profile):
    """A circuit of sockets and lights: a little at night, a morning bump, most in the evening;
    its size varies from circuit to circuit (peaks of about 300-800 W)."""

    def power_w(self, lt: LocalTime) -> np.ndarray:
        scale = 0.6 + 0.8 * float(hash_uniform(self.seed, self.stream, 0)[0])
        shape = np.interp(lt.hour, _GENERIC_HOURS, _GENERIC_SHAPE)
        return scale * (25.0 + shape * (150.0 + 350.0 * self.noise(lt.t, 300.0)))


class Sum(Profile):
    """Several profiles on one circuit."""

    def __init__(self, parts: Sequence[Profile]) -> None:
        self.parts = tuple(parts)

    def power_w(self, lt: LocalTime) -> np.ndarray:
        return np.sum([p.power_w(lt) for p in self.parts], axis=0)


# ------------------------------------------------------------------------------------- sun

# Rough coordinates of a few time zones' main city; others fall back on their UTC offset.
_PLACES: dict[str, tuple[float, float]] = {
    "Europe/Brussels": (50.85, 4.35),
    "Europe/Amsterdam": (52.37, 4.90),
    "Europe/Paris": (48.86, 2.35),
    "Europe/Luxembourg": (49.61, 6.13),
    "Europe/Berlin": (52.52, 13.40),
    "Europe/London": (51.51, -0.13),
    "Europe/Madrid": (40.42, -3.70),
    "Europe/Rome": (41.90, 12.50),
    "Europe/Stockholm": (59.33, 18.07),
    "America/New_York": (40.71, -74.01),
    "America/Chicago": (41.88, -87.63),
    "America/Denver": (39.74, -104.99),
    "America/Los_Angeles": (34.05, -118.24),
    "America/Toronto": (43.65, -79.38),
    "America/Mexico_City": (19.43, -99.13),
    "America/Sao_Paulo": (-23.55, -46.63),
    "Australia/Sydney": (-33.87, 151.21),
    "Asia/Tokyo": (35.68, 139.69),
}


def place_of(tz: ZoneInfo) -> tuple[float, float]:
    """(latitude, longitude) in degrees for a time zone: a table, else 51° N (40° N in the
    Americas) at the longitude of the zone's standard UTC offset."""
    if tz.key in _PLACES:
        return _PLACES[tz.key]
    january = datetime(2025, 1, 15, 12, tzinfo=tz).utcoffset().total_seconds() / HOUR_S
    latitude = 40.0 if tz.key.startswith("America/") else 51.0
    return latitude, 15.0 * january


def solar_elevation_sin(t: np.ndarray, latitude_deg: float, longitude_deg: float) -> np.ndarray:
    """Sine of the sun's elevation at Unix times ``t`` (NOAA's low-precision equations: the
    Fourier series of the declination and the equation of time, good to a fraction of a degree)."""
    t = np.asarray(t, dtype=np.float64)
    seconds = t.astype("datetime64[s]")
    doy = (seconds.astype("datetime64[D]") - seconds.astype("datetime64[Y]")).astype(np.int64) + 1
    utc_hours = np.mod(t, DAY_S) / HOUR_S
    g = 2 * np.pi / 365.0 * (doy - 1 + (utc_hours - 12) / 24)
    declination = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    eq_time_min = 229.18 * (
        0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g)
    )
    solar_min = utc_hours * 60 + eq_time_min + 4 * longitude_deg
    hour_angle = np.deg2rad(solar_min / 4 - 180)
    lat = np.deg2rad(latitude_deg)
    return np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(hour_angle)


class Solar(Profile):
    """PV production (W, positive): clear-sky power from the sun's elevation, times passing
    clouds. Each day draws a cloudiness in [0, 1] (``cloudiness`` fixes it for every day);
    clouds are smooth noise that covers the sun where it falls below the cloudiness."""

    def __init__(
        self, seed: int, stream: str, peak_w: float, place: tuple[float, float], cloudiness: float | None = None
    ) -> None:
        super().__init__(seed, stream)
        self.peak_w = peak_w
        self.latitude, self.longitude = place
        self.cloudiness = cloudiness

    def clear_sky_w(self, t: np.ndarray) -> np.ndarray:
        """Production under a clear sky: the sun's elevation, and the air mass it shines
        through (Meinel's 0.7 ** (AM ** 0.678), normalised to the sun at the zenith)."""
        elevation = np.clip(solar_elevation_sin(t, self.latitude, self.longitude), 0.0, 1.0)
        air_mass = 1.0 / np.maximum(elevation, 0.02)
        return self.peak_w * 0.95 * elevation * 0.7 ** (air_mass**0.678 - 1.0)

    def cloud_cover(self, lt: LocalTime) -> np.ndarray:
        """0 (sun) .. 1 (behind a cloud) at each time."""
        if self.cloudiness is None:
            cloudiness = hash_uniform(self.seed, self.stream + 7, lt.day) ** 0.8
        else:
            cloudiness = np.full_like(lt.t, self.cloudiness)
        clouds = 0.6 * self.noise(lt.t, 180.0, salt=1) + 0.4 * self.noise(lt.t, 1200.0, salt=2)
        return np.clip((cloudiness - clouds) / 0.1 + 0.5, 0.0, 1.0) * (cloudiness > 0)

    def power_w(self, lt: LocalTime) -> np.ndarray:
        return self.clear_sky_w(lt.t) * (1.0 - 0.75 * self.cloud_cover(lt))


# ------------------------------------------------------------------------- water and gas


class Showers:
    """Morning showers (1-3 between 06:30 and 08:30, 6-10 minutes each) and an evening one on
    some days: they draw water and heat it with gas."""

    def __init__(self, seed: int) -> None:
        self.events = DailyEvents(seed, "showers", self._plan)

    @staticmethod
    def _plan(u: Draw, weekday: np.ndarray, doy: np.ndarray) -> list:
        first = _hours(np.where(weekday >= 5, 8.0, 6.5))
        count = 1 + np.floor(3 * u(0))
        rows = []
        for k in range(3):
            start = first + _hours(2.0 * u(1 + k))
            rows.append((start, start + 360.0 + 240.0 * u(4 + k), np.where(k < count, 1.0, 0.0)))
        evening = _hours(20.0 + 2.5 * u(7))
        rows.append((evening, evening + 300.0 + 300.0 * u(8), np.where(u(9) < 0.4, 1.0, 0.0)))
        return rows


def _water_plan(u: Draw, weekday: np.ndarray, doy: np.ndarray) -> list:
    """Water draws other than showers, in litres per second: toilet flushes, taps, dishwasher."""
    rows = []
    flushes = 6 + np.floor(7 * u(0))  # 6-12 flushes of 6 l
    for k in range(12):
        start = _hours(6.0 + 17.0 * u(1 + k))
        rows.append((start, start + 60.0, np.where(k < flushes, 0.1, 0.0)))
    taps = 8 + np.floor(12 * u(13))  # 8-19 taps of 0.5-3 l
    for k in range(19):
        start = _hours(6.5 + 16.0 * u(14 + k))
        rows.append((start, start + 30.0, np.where(k < taps, (0.5 + 2.5 * u(33 + k)) / 30.0, 0.0)))
    dishwasher = _hours(19.5 + 2.0 * u(52))
    for fill in range(4):
        start = dishwasher + fill * 900.0
        rows.append((start, start + 120.0, 0.04))
    return rows


class WaterFlow:
    """Water use in litres per second: showers (9 l/min), flushes, taps, a dishwasher."""

    def __init__(self, seed: int, showers: Showers) -> None:
        self.showers = showers
        self.draws = DailyEvents(seed, "water", _water_plan)

    def rate(self, lt: LocalTime) -> np.ndarray:
        return 0.15 * self.showers.events.level(lt) + self.draws.level(lt)

    def smooth_rate(self, lt: LocalTime) -> np.ndarray:
        """The part of :meth:`rate` without events: none."""
        return np.zeros_like(lt.t)

    def event_cumulative(self, x: np.ndarray) -> np.ndarray:
        """Litres drawn up to local times ``x``, exactly (see :meth:`DailyEvents.cumulative`)."""
        return 0.15 * self.showers.events.cumulative(x) + self.draws.cumulative(x)


class GasFlow:
    """Gas in m3 per second: space heating by season and time of day (a fraction of it when a
    heat pump does the heating), hot water for the showers, and cooking."""

    def __init__(self, seed: int, showers: Showers, cooking: Induction, heat_pump: bool) -> None:
        self.seed = seed & _MASK32
        self.showers = showers
        self.cooking = cooking
        self.heating_share = 0.15 if heat_pump else 1.0

    def rate(self, lt: LocalTime) -> np.ndarray:
        shower_m3h = 2.2 * self.showers.events.level(lt)
        cooking_m3h = 0.12 * self.cooking.sessions.level(lt)
        return self.smooth_rate(lt) + (shower_m3h + cooking_m3h) / HOUR_S

    def smooth_rate(self, lt: LocalTime) -> np.ndarray:
        """Space heating, m3 per second."""
        hour = lt.hour
        awake = (hour >= 6) & (hour < 22.5)
        wander = 0.7 + 0.6 * smooth_noise(self.seed, stream_id("gas"), lt.t, 1800.0)
        heating_m3h = (0.03 + 1.0 * coldness(lt.doy) * np.where(awake, 1.0, 0.45)) * wander * self.heating_share
        return heating_m3h / HOUR_S

    def event_cumulative(self, x: np.ndarray) -> np.ndarray:
        """m3 burnt for showers and cooking up to local times ``x``, exactly."""
        return (2.2 * self.showers.events.cumulative(x) + 0.12 * self.cooking.sessions.cumulative(x)) / HOUR_S


class DoorContact:
    """A door opened 3-8 times a day between 07:00 and 22:00, for 15 s to 2.5 minutes."""

    def __init__(self, seed: int, stream: str) -> None:
        self.openings = DailyEvents(seed, stream, self._plan)

    @staticmethod
    def _plan(u: Draw, weekday: np.ndarray, doy: np.ndarray) -> list:
        count = 3 + np.floor(6 * u(0))
        rows = []
        for k in range(8):
            start = _hours(7.0 + 15.0 * u(1 + k))
            rows.append((start, start + 15.0 + 135.0 * u(9 + k), np.where(k < count, 1.0, 0.0)))
        return rows

    def is_open(self, lt: LocalTime) -> np.ndarray:
        return self.openings.level(lt) > 0
