"""Peak memory of one run, inference latency, and the device a run uses."""
from __future__ import annotations

import contextlib
import resource
import sys
import threading
import time

import psutil
import torch


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process to its current RSS (Linux >= 4.0:
    ``/proc/self/clear_refs``); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_since_reset() -> int:
    """The kernel's peak RSS of this process since the last reset (VmHWM), or 0 if unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class PeakMemory:
    """Peak memory from ``start()`` to ``stop()``, and peak and seconds per phase
    (``with memory.phase("train")``).

    On CUDA, the caching allocator's peaks (allocated and reserved), reset at start and at each
    phase. On CPU, the resident set: where Linux lets the kernel's high-water mark be reset
    (``/proc/self/clear_refs``), that mark alone, reset at start and at each phase and read before
    every reset, so that it covers the run exactly and nothing polls (``experiments/bench_speed.py
    --variants harness_lora harness_lora_polled`` compares the two; on 2 CPU cores the difference
    was within the rounds' noise). Elsewhere
    a sampler every ``interval_s`` that starts at zero with the run (so earlier runs in the process
    do not count), with the process's true peak when it runs one job alone (``isolated``). A phase
    entered twice (training, then evaluation, each epoch) keeps its highest peak.

    A phase entered with ``in_run=False`` (the FLOP count's step, the harness measuring rather
    than the run training) keeps its own peak, ``apart()``, out of the run's: the marks are reset
    after it (on CUDA, the blocks it left cached are given back first). What it leaves allocated,
    or in the C heap, is held by the run from then on and counts. Where the mark cannot be reset,
    an isolated run's process-wide peak (``ru_maxrss``) still covers it, and on CUDA the CPU's
    resident-set peak (``peak_cpu_rss_bytes``) does.
    """

    def __init__(self, device: torch.device, isolated: bool, interval_s: float = 0.01, poll: bool = False) -> None:
        """``poll``: sample every ``interval_s`` even where the kernel's mark can be reset (what
        ``experiments/bench_speed.py``'s ``harness_lora_polled`` measures the cost of)."""
        self.device, self.isolated, self.interval_s, self.poll = device, isolated, interval_s, poll
        self._proc = psutil.Process()
        self._peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline_rss = 0
        self.phases: dict[str, dict[str, int]] = {}  # name -> {"rss": ..., "cuda": ...}
        self._current: str | None = None
        self._resets = False  # the kernel's mark was reset: ru_maxrss no longer covers the run
        self._kernel = False  # the kernel's mark measures the run: no sampler
        self._run_cuda = self._run_cuda_reserved = 0  # CUDA peaks of the whole run, over phases
        self._apart: set[str] = set()  # phases measured apart from the run's peak

    def _sample(self) -> None:
        while not self._stop.is_set():
            current = self._current
            rss = self._proc.memory_info().rss
            if self._current != current:  # a phase began or ended meanwhile: whose sample is unsure
                continue
            if current not in self._apart:
                self._peak_rss = max(self._peak_rss, rss)
            if current is not None:
                bucket = self.phases[current]
                bucket["rss"] = max(bucket["rss"], rss)
            self._stop.wait(self.interval_s)

    def start(self) -> "PeakMemory":
        self.baseline_rss = self._proc.memory_info().rss
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._kernel = self._resets = _reset_peak_rss()
        if self.poll or not self._kernel:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _fold_kernel_into(self, name: str | None) -> None:
        """The kernel's mark since its last reset, into the run's peak and phase ``name``'s."""
        rss = _peak_rss_since_reset()
        if name not in self._apart:
            self._peak_rss = max(self._peak_rss, rss)
        if name is not None:
            self.phases[name]["rss"] = max(self.phases[name]["rss"], rss)

    def _cuda_peaks(self) -> tuple[int, int]:
        torch.cuda.synchronize(self.device)
        return (int(torch.cuda.max_memory_allocated(self.device)),
                int(torch.cuda.max_memory_reserved(self.device)))

    @contextlib.contextmanager
    def phase(self, name: str, in_run: bool = True):
        """Measure the peak of what runs inside under ``name`` (its own peak, not the run's);
        ``in_run=False``: and keep it out of the run's peak (the class's docstring)."""
        if name in self.phases and (name in self._apart) == in_run:
            raise ValueError(f"phase {name!r} was measured {'apart from' if in_run else 'in'} the run's "
                             f"peak before: give it another name")
        bucket = self.phases.setdefault(name, {"rss": 0, "cuda": 0, "cuda_reserved": 0, "s": 0.0})
        if not in_run:
            self._apart.add(name)
        outer, self._current = self._current, name
        started = time.perf_counter()
        if self.device.type == "cuda":
            self._fold_cuda_into(outer)
            torch.cuda.reset_peak_memory_stats(self.device)
        if self._kernel and self.device.type != "cuda":  # what the mark holds before it is reset
            self._fold_kernel_into(outer)
        reset = self.device.type != "cuda" and _reset_peak_rss()
        self._resets = self._resets or reset
        try:
            yield
        finally:
            bucket["s"] += time.perf_counter() - started
            if reset:
                bucket["rss"] = max(bucket["rss"], _peak_rss_since_reset())
                if in_run:
                    self._peak_rss = max(self._peak_rss, bucket["rss"])
                else:  # what follows is measured from the memory held now
                    _reset_peak_rss()
            if self.device.type == "cuda":
                self._fold_cuda_into(name)
                if not in_run:  # its cached blocks are not the run's: the reserved peak starts anew
                    torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(self.device)
            self._current = outer

    def _fold_cuda_into(self, name: str | None) -> None:
        allocated, reserved = self._cuda_peaks()
        if name not in self._apart:
            self._run_cuda = max(self._run_cuda, allocated)
            self._run_cuda_reserved = max(self._run_cuda_reserved, reserved)
        if name is not None:
            bucket = self.phases[name]
            bucket["cuda"] = max(bucket["cuda"], allocated)
            bucket["cuda_reserved"] = max(bucket["cuda_reserved"], reserved)

    def phase_peak(self, name: str) -> int:
        """The peak inside phase ``name`` until now (0 if it has not run): the kind of
        ``peak_memory_bytes``, device memory on a GPU, RSS on CPU."""
        bucket = self.phases.get(name, {})
        return int(bucket.get("cuda" if self.device.type == "cuda" else "rss", 0))

    def peak_so_far(self) -> int:
        """The run's peak until now (peak_memory_bytes's kind), without stopping."""
        if self.device.type == "cuda":
            self._fold_cuda_into(self._current)
            return int(self._run_cuda)
        rss = self._run_rss()
        return int(max(rss, _peak_rss_since_reset()) if self._resets and self._current not in self._apart else rss)

    def _run_rss(self) -> int:
        """The run's resident-set peak folded so far: the run's and its phases', the kept-apart ones aside."""
        return max([self._peak_rss, *(b["rss"] for n, b in self.phases.items() if n not in self._apart)])

    def apart(self) -> dict[str, int]:
        """The peaks of the phases kept out of the run's (``phase(name, in_run=False)``), by name,
        of ``peak_memory_bytes``'s kind."""
        return {name: self.phase_peak(name) for name in sorted(self._apart)}

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        rss = self._run_rss()
        if self._resets:  # the kernel's mark since the last phase began (the phases hold the rest)
            rss = max(rss, _peak_rss_since_reset())
        if self.isolated:
            # ru_maxrss (KiB on Linux, bytes on macOS): this process's peak (since the last reset).
            scale = 1 if sys.platform == "darwin" else 1024
            rss = max(rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
        out = {"peak_cpu_rss_bytes": int(rss), "baseline_cpu_rss_bytes": int(self.baseline_rss)}
        if self.device.type == "cuda":
            self._fold_cuda_into(None)
            out["peak_cuda_allocated_bytes"] = int(self._run_cuda)
            out["peak_cuda_reserved_bytes"] = int(self._run_cuda_reserved)
            out.update(peak_memory_bytes=out["peak_cuda_allocated_bytes"], memory_kind="cuda_allocated")
        else:
            out.update(peak_memory_bytes=int(rss), memory_kind="cpu_rss")
        key = "cuda" if self.device.type == "cuda" else "rss"
        for name in ("train", "eval"):
            out[f"peak_memory_{name}_bytes"] = self.phases[name][key] if name in self.phases else None
        for name in ("setup", "eval"):  # seconds; the training phase's are train_s
            out[f"{name}_s"] = self.phases[name]["s"] if name in self.phases else None
        return out
