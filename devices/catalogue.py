"""The hardware catalogue from the installation manual: names, limits, sensors.

Plain data, no Django: the rules, the models' choices and the metering side all read it.
"""

from __future__ import annotations

TOPOLOGIES: dict[str, str] = {
    "1P": "Single phase 1×230 V",
    "3P+N": "Star 3×400 V with neutral",
    "3P": "Delta 3×230 V, no neutral",
    "2P+N": "Split phase 2×120 V (Americas)",
    "3P+N-208": "Star 3×208 V with neutral (Americas)",
}

# Phases a CT may be configured on, per topology (SPEC section 3).
TOPOLOGY_PHASES: dict[str, tuple[str, ...]] = {
    "1P": ("L1",),
    "2P+N": ("L1", "L2"),
    "3P+N": ("L1", "L2", "L3"),
    "3P+N-208": ("L1", "L2", "L3"),
    "3P": ("L1", "L2", "L3"),
}

# Voltage channels the Power Box reports, per topology (against N, or L3 in delta).
TOPOLOGY_VOLTAGES: dict[str, tuple[str, ...]] = {
    "1P": ("L1",),
    "2P+N": ("L1", "L2"),
    "3P+N": ("L1", "L2", "L3"),
    "3P+N-208": ("L1", "L2", "L3"),
    "3P": ("L1", "L2"),
}

TOPOLOGY_NOMINAL_V: dict[str, float] = {"1P": 230.0, "3P+N": 230.0, "3P": 230.0, "2P+N": 120.0, "3P+N-208": 120.0}

FREQUENCIES_HZ = (50, 60)

GATEWAY_MODELS: dict[str, str] = {
    "genius": "Genius (MOD-GW-1)",
    "connect": "Connect (MOD-GW-3)",
    "wifi-connect": "Wi-Fi Connect (MOD-GW-2)",
}

CONNECTIVITY: dict[str, str] = {"ethernet": "Ethernet", "wifi": "Wi-Fi", "cellular": "3G/4G dongle"}

GATEWAY_CONNECTIVITY: dict[str, tuple[str, ...]] = {
    "genius": ("ethernet", "wifi", "cellular"),
    "connect": ("ethernet", "wifi"),
    "wifi-connect": ("wifi",),
}

# Only the Genius drives Input and Output modules on bus B.
GATEWAYS_WITH_IO_MODULES = ("genius",)

MAX_CT_MODULES_PER_POWERBOX = 7
MAX_IO_MODULES_PER_GATEWAY = 10
MAX_CT_BUS_LENGTH_M = 100.0
MAX_GATEWAY_BUS_LENGTH_M = 500.0

CT_HUB_INPUTS = ("A", "B", "C", "D")
SOLID_CORE_INPUTS = ("A", "B", "C")
INPUT_MODULE_INPUTS = ("1", "2", "3", "4")
OUTPUT_MODULE_OUTPUTS = ("1", "2")

# CT types the manual lists, with their rating in amperes.
CT_TYPES: dict[str, float] = {
    "AC-CT-50A": 50.0,
    "AC-CT-100A": 100.0,
    "AC-CT-200A": 200.0,
    "AC-CT-400A": 400.0,
    "AC-CT-S-50A": 50.0,
    "AC-CT-S-100A": 100.0,
    "AC-CT-S-200A": 200.0,
    "AC-RSCT-12CM": 1600.0,
    "AC-RSCT-19CM": 4000.0,
}

LOAD_KINDS: dict[str, str] = {
    "grid": "Grid",
    "solar": "Solar",
    "battery": "Battery",
    "consumption": "Consumption",
    "circuit": "Circuit",
    "appliance": "Appliance",
}

INPUT_MODES: dict[str, str] = {"pulse": "Pulse counter", "status": "Status (low/high)"}
OUTPUT_MODES: dict[str, str] = {"separate": "Separate (1, 2)", "combined": "Combined (1 & 2)"}

# Addendum 2: characters a gateway accepts in a Wi-Fi SSID and password.
WIFI_SSID_SPECIALS = "!#$%&'()*+-./:;<>?@[]^_`{|}~"
WIFI_PASSWORD_SPECIALS = WIFI_SSID_SPECIALS + '"\\'
WIFI_MAX_KEY_LENGTH = 20
