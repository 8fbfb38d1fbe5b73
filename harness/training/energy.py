"""Energy a run used, where this machine can measure it: RAPL on a CPU, NVML on an NVIDIA GPU.

    meter = EnergyMeter("cpu")        # or EnergyMeter("cuda", index=0)
    meter.start()
    ...                               # the work measured
    meter.stop()                      # {"energy_j": 1234.5, "energy_kind": "rapl_package"}

What is measured (``energy_kind``) is always the whole device, never this process alone:

- ``rapl_package``: the kernel's RAPL energy counters under ``/sys/class/powercap`` (the
  ``intel-rapl`` powercap interface, which AMD Zen kernels expose too), summed over every CPU
  package (top-level domains ``intel-rapl:N`` named ``package-N``). It is the energy of the whole
  package(s), every process and core on them included, not of this process; sub-domains
  (``intel-rapl:N:M``: cores, uncore, DRAM) are parts of a package and are not added again. The
  counters wrap at ``max_energy_range_uj``; a wrap between two readings is undone, and a
  background thread reads them every ``poll_s`` seconds so that a long run cannot wrap twice
  between readings. Since CVE-2020-8694 the counters are readable by root only on most systems.
- ``nvml_gpu``: NVML's total energy counter of the GPU (``nvmlDeviceGetTotalEnergyConsumption``,
  millijoules, Volta and newer; pip package ``nvidia-ml-py``, extra ``gpu``), the whole GPU with
  every process on it. CUDA device ``index`` is found in NVML by its UUID where torch (already
  imported) gives one, else through ``CUDA_VISIBLE_DEVICES`` (a number or a ``GPU-`` UUID per
  entry), else NVML's index equals CUDA's.

Where nothing can be read (no counters, a file unreadable, no pynvml, an NVML error, another
device type) ``energy_j`` and ``energy_kind`` are None: the field stays empty, never an estimate.

Standard library only at import time (pynvml and torch are looked up only when a GPU is measured).
"""
from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")
PACKAGE_DOMAIN = re.compile(r"intel-rapl:\d+")  # top level only: intel-rapl:0, not intel-rapl:0:1
POLL_S = 60.0  # RAPL wraps after max_energy_range_uj (262 kJ is common: about 40 min at 100 W)


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """The top-level package domains under ``root`` (OSError if the tree cannot be listed)."""
    return sorted(d for d in root.iterdir() if PACKAGE_DOMAIN.fullmatch(d.name)
                  and (d / "name").read_text().strip().startswith("package"))


class _Rapl:
    """Accumulates the packages' counters reading by reading, undoing one wrap per interval."""

    kind = "rapl_package"

    def __init__(self, root: Path) -> None:
        self.domains = rapl_packages(root)
        if not self.domains:
            raise OSError(f"no RAPL package domain under {root}")
        self.ranges = [_read_int(d / "max_energy_range_uj") for d in self.domains]
        self.last = self._read()
        self.total_uj = 0

    def _read(self) -> list[int]:
        return [_read_int(d / "energy_uj") for d in self.domains]

    def sample(self) -> None:
        now = self._read()
        for last, value, top in zip(self.last, now, self.ranges):
            self.total_uj += value - last if value >= last else value + top - last
        self.last = now

    def joules(self) -> float:
        return self.total_uj / 1e6


def _cuda_uuid(index: int) -> str | None:
    """NVML's UUID (``GPU-...``) of CUDA device ``index``, from torch if it is already imported."""
    torch = sys.modules.get("torch")
    try:
        uuid = torch.cuda.get_device_properties(index).uuid if torch is not None else None
    except Exception:  # noqa: BLE001 - an older torch, no CUDA: fall back to the index
        return None
    return None if uuid is None else "GPU-" + str(uuid).removeprefix("GPU-")


class _Nvml:
    kind = "nvml_gpu"

    def __init__(self, index: int) -> None:
        import pynvml  # nvidia-ml-py; ImportError: nothing measured

        self.nvml = pynvml
        pynvml.nvmlInit()
        try:
            self.handle = self._handle(index)
            self.first = pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception:
            pynvml.nvmlShutdown()
            raise
        self.last = self.first

    def _handle(self, index: int) -> Any:
        uuid = _cuda_uuid(index)
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        if uuid is None and visible:
            uuid = visible[index]  # IndexError: no such device
            if uuid.isdigit():
                return self.nvml.nvmlDeviceGetHandleByIndex(int(uuid))
        if uuid is not None:
            return self.nvml.nvmlDeviceGetHandleByUUID(uuid.encode())
        return self.nvml.nvmlDeviceGetHandleByIndex(index)

    def sample(self) -> None:
        self.last = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)

    def joules(self) -> float:
        return (self.last - self.first) / 1e3  # a 64-bit count of mJ since the driver loaded

    def close(self) -> None:
        self.nvml.nvmlShutdown()


class EnergyMeter:
    """Energy of ``device_type`` ("cpu" or "cuda") between :meth:`start` and :meth:`stop`."""

    def __init__(self, device_type: str, index: int = 0, powercap: str | os.PathLike = POWERCAP,
                 poll_s: float | None = POLL_S) -> None:
        self.device_type, self.index, self.powercap = str(device_type), index, Path(powercap)
        self.poll_s = poll_s
        self._counter: _Rapl | _Nvml | None = None
        self._failed = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._counter, self._failed = None, False
        try:
            if self.device_type == "cpu":
                self._counter = _Rapl(self.powercap)
            elif self.device_type == "cuda":
                self._counter = _Nvml(self.index)
        except Exception:  # noqa: BLE001 - unreadable, absent, no pynvml: nothing is measured
            self._counter = None
        if isinstance(self._counter, _Rapl) and self.poll_s:
            self._done.clear()
            self._thread = threading.Thread(target=self._poll, name="energy-meter", daemon=True)
            self._thread.start()

    def sample(self) -> None:
        """Read the counters now (the polling thread does; a wrap is undone per reading)."""
        with self._lock:
            if self._counter is None or self._failed:
                return
            try:
                self._counter.sample()
            except Exception:  # noqa: BLE001 - a counter lost mid-run: no figure at all
                self._failed = True

    def _poll(self) -> None:
        while not self._done.wait(self.poll_s):
            self.sample()

    def stop(self) -> dict:
        """``{"energy_j": joules or None, "energy_kind": what was measured or None}``."""
        if self._thread is not None:
            self._done.set()
            self._thread.join()
            self._thread = None
        self.sample()
        counter, self._counter = self._counter, None
        if counter is None:
            return {"energy_j": None, "energy_kind": None}
        if isinstance(counter, _Nvml):
            try:
                counter.close()
            except Exception:  # noqa: BLE001
                pass
        if self._failed:
            return {"energy_j": None, "energy_kind": None}
        return {"energy_j": counter.joules(), "energy_kind": counter.kind}
