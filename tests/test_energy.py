"""The energy meter on a fake powercap tree and a fake pynvml: exact joules, wraps, and None
(never an estimate) where a counter cannot be read."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest

from harness.training import energy
from harness.training.energy import EnergyMeter

RANGE = 1_000_000_000  # max_energy_range_uj of the fake packages (1 kJ)


def domain(root, name: str, label: str, uj: int, top: int = RANGE):
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{top}\n")
    return d


@pytest.fixture
def powercap(tmp_path):
    """Two packages, a sub-domain of package 0 (its cores), an mmio twin and a psys domain:
    only the two packages count."""
    root = tmp_path / "powercap"
    domain(root, "intel-rapl:0", "package-0", 5_000_000)
    domain(root, "intel-rapl:1", "package-1", 900_000_000)
    domain(root, "intel-rapl:0:0", "core", 1_000_000)
    domain(root, "intel-rapl-mmio:0", "package-0", 7_000_000)
    domain(root, "intel-rapl:2", "psys", 3_000_000)
    return root


def advance(root, name: str, uj: int) -> None:
    (root / name / "energy_uj").write_text(f"{uj}\n")


def test_rapl_sums_the_packages_only_and_undoes_a_wrap(powercap):
    meter = EnergyMeter("cpu", powercap=powercap, poll_s=None)
    meter.start()
    advance(powercap, "intel-rapl:0", 17_500_000)  # +12.5 J
    advance(powercap, "intel-rapl:1", 100_000_000)  # wrapped: +100 J to the top, +100 J after
    advance(powercap, "intel-rapl:0:0", 900_000_000)  # a sub-domain: already in package 0
    advance(powercap, "intel-rapl-mmio:0", 900_000_000)
    advance(powercap, "intel-rapl:2", 900_000_000)
    assert meter.stop() == {"energy_j": 212.5, "energy_kind": "rapl_package"}


def test_rapl_readings_between_start_and_stop_undo_every_wrap(powercap):
    meter = EnergyMeter("cpu", powercap=powercap, poll_s=None)
    meter.start()
    for uj in (600_000_000, 100_000_000, 800_000_000, 50_000_000):  # package 0 wraps twice
        advance(powercap, "intel-rapl:0", uj)
        meter.sample()
    # package 0: 595 + 500 + 700 + 250 J; package 1 unchanged
    assert meter.stop() == {"energy_j": 2045.0, "energy_kind": "rapl_package"}


def test_the_polling_thread_reads_the_counters(powercap):
    meter = EnergyMeter("cpu", powercap=powercap, poll_s=0.01)
    meter.start()
    advance(powercap, "intel-rapl:1", 950_000_000)
    assert meter._thread is not None and meter._thread.is_alive()
    result = meter.stop()
    assert result == {"energy_j": 50.0, "energy_kind": "rapl_package"} and meter._thread is None


@pytest.mark.parametrize("break_it", ["unreadable", "missing_counter", "missing_range", "garbage"])
def test_an_unreadable_or_missing_counter_gives_none(powercap, break_it):
    target = powercap / "intel-rapl:1"
    if break_it == "unreadable":  # permission denied, as for non-root since CVE-2020-8694
        (target / "energy_uj").unlink()
        (target / "energy_uj").mkdir()  # reading a folder fails as root too
    elif break_it == "missing_counter":
        (target / "energy_uj").unlink()
    elif break_it == "missing_range":
        (target / "max_energy_range_uj").unlink()
    else:
        (target / "energy_uj").write_text("n/a\n")
    meter = EnergyMeter("cpu", powercap=powercap, poll_s=None)
    meter.start()
    advance(powercap, "intel-rapl:0", 17_500_000)
    assert meter.stop() == {"energy_j": None, "energy_kind": None}


def test_a_counter_lost_during_the_run_gives_none(powercap):
    meter = EnergyMeter("cpu", powercap=powercap, poll_s=None)
    meter.start()
    (powercap / "intel-rapl:0" / "energy_uj").unlink()
    assert meter.stop() == {"energy_j": None, "energy_kind": None}


def test_no_powercap_tree_or_no_package_gives_none(tmp_path):
    for root in (tmp_path / "absent", tmp_path):
        meter = EnergyMeter("cpu", powercap=root, poll_s=None)
        meter.start()
        assert meter.stop() == {"energy_j": None, "energy_kind": None}
    other = EnergyMeter("mps")
    other.start()
    assert other.stop() == {"energy_j": None, "energy_kind": None}
    assert EnergyMeter("cpu", powercap=tmp_path).stop() == {"energy_j": None, "energy_kind": None}


class FakeNvml(types.ModuleType):
    """pynvml's calls the meter makes, on GPUs with mJ counters; GPU 1 cannot report energy."""

    def __init__(self, counters: dict[int, list[int]], uuids: dict[str, int] | None = None):
        super().__init__("pynvml")
        self.counters, self.uuids, self.inits, self.shutdowns = counters, uuids or {}, 0, 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        assert isinstance(uuid, bytes)
        return ("gpu", self.uuids[uuid.decode()])

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        readings = self.counters[handle[1]]
        if not readings:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return readings.pop(0)


@pytest.fixture
def nvml(monkeypatch):
    fake = FakeNvml({0: [10_000, 10_250], 1: [], 2: [5_000_000, 5_123_456]},
                    {"GPU-aaaa": 0, "GPU-cccc": 2})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(energy, "_cuda_uuid", lambda index: None)
    return fake


def measure(device="cuda", index=0) -> dict:
    meter = EnergyMeter(device, index=index)
    meter.start()
    return meter.stop()


def test_nvml_counts_millijoules_of_the_gpu(nvml):
    assert measure(index=0) == {"energy_j": 0.25, "energy_kind": "nvml_gpu"}
    assert measure(index=2) == {"energy_j": 123.456, "energy_kind": "nvml_gpu"}
    assert nvml.inits == nvml.shutdowns == 2


def test_nvml_finds_the_cuda_device_behind_cuda_visible_devices(nvml, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")  # CUDA's device 0 is NVML's 2
    assert measure(index=0) == {"energy_j": 123.456, "energy_kind": "nvml_gpu"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa")
    assert measure(index=0) == {"energy_j": 0.25, "energy_kind": "nvml_gpu"}
    monkeypatch.setattr(energy, "_cuda_uuid", lambda index: "GPU-cccc")  # torch's UUID wins
    nvml.counters[2] = [0, 2_000]
    assert measure(index=0) == {"energy_j": 2.0, "energy_kind": "nvml_gpu"}


def test_nvml_errors_and_a_missing_pynvml_give_none(nvml, monkeypatch):
    assert measure(index=1) == {"energy_j": None, "energy_kind": None}  # counter not supported
    assert nvml.inits == nvml.shutdowns == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert measure(index=3) == {"energy_j": None, "energy_kind": None}  # no such device
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert measure(index=0) == {"energy_j": None, "energy_kind": None}


def test_the_module_imports_no_torch_or_pynvml():
    code = "import sys, harness.training.energy; print(sorted({'torch', 'pynvml', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
