"""A real, throwaway SLURM cluster of one node for the tests, from the system's binaries.

MUNGE (``munged``, SLURM's authentication) with a fresh key, the controller (``slurmctld``) and the
node daemon (``slurmd``), all on private ports, sockets and folders under a temporary directory
and a configuration of their own (``SLURM_CONF``): nothing is read from or written to /etc. The
node offers this machine's cores and memory in one partition, ``debug``. Without the binaries
(Debian's ``slurm-wlm`` and ``munge`` packages) the tests that need it skip with a one-line reason.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = ("SLURM binaries (slurmctld, slurmd, sbatch, munged) not found; install Debian's "
                "slurm-wlm and munge packages")
TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "munged", "mungekey")
PARTITION = "debug"


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next((f"{d}/{tool}" for d in ("/usr/sbin", "/sbin")
                                       if os.access(f"{d}/{tool}", os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    """What the node offers: this machine's memory less 1 GiB, in MiB."""
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return max(1024, total_kb // 1024 - 1024)


class Cluster:
    """A running one-node cluster; :attr:`env` is the environment its commands (and the
    harness's submitit launcher) need: ``SLURM_CONF`` naming this cluster's configuration."""

    def __init__(self) -> None:
        self.tools = {t: _which(t) for t in TOOLS}
        if not all(self.tools.values()):
            raise FileNotFoundError(INSTALL_HINT)
        self.root = Path(tempfile.mkdtemp(prefix="harness-slurm-"))
        os.chmod(self.root, 0o755)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        try:
            self._munge()
            self._configure()
            self._run("slurmctld", "-f", str(self.conf))
            self._run("slurmd", "-f", str(self.conf), "-N", self.node)
            self._wait_idle()
        except BaseException:
            self.stop()
            raise

    def _run(self, tool: str, *args: str) -> str:
        done = subprocess.run([self.tools[tool], *args], capture_output=True, text=True, timeout=60,
                              env=self.env)
        if done.returncode:
            logs = " | ".join(p.read_text()[-400:] for p in self.root.glob("*.log"))
            raise RuntimeError(f"{tool} failed: {(done.stderr or done.stdout).strip()[-400:]} {logs}")
        return done.stdout

    def _munge(self) -> None:
        m = self.root / "munge"
        m.mkdir(mode=0o700)
        self.munge_socket = m / "munge.sock"
        self._run("mungekey", "--create", f"--keyfile={m / 'munge.key'}")
        os.chmod(m / "munge.key", 0o600)
        self._run("munged", "--force", f"--socket={self.munge_socket}", f"--key-file={m / 'munge.key'}",
                  f"--pid-file={m / 'munged.pid'}", f"--log-file={m / 'munged.log'}",
                  f"--seed-file={m / 'munged.seed'}")

    def _configure(self) -> None:
        user, r = getpass.getuser(), self.root
        for folder in ("state", "spool"):
            (r / folder).mkdir()
        self.conf.write_text("\n".join([
            "ClusterName=harness", f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={self.munge_socket}",
            f"SlurmUser={user}", f"SlurmdUser={user}",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'slurmctld.log'}", f"SlurmdLogFile={r / 'slurmd.log'}",
            # No cgroups (containers rarely allow them) and no accounting database.
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "MpiDefault=none",
            "SwitchType=switch/none", "ReturnToService=2", "SchedulerParameters=sched_interval=1",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_memory_mb()} "
            "State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if "idle" in self._run("sinfo", "-h", "-o", "%T"):
                    return
            except RuntimeError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the SLURM node did not come up: {self._run('sinfo', '-h', '-o', '%T %E')}")

    def stop(self) -> None:
        """Stop the daemons (SIGTERM, then SIGKILL after 20 s) and remove the folder."""
        pids = []
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            try:
                pids.append(int((self.root / pid_file).read_text().split()[0]))
                os.kill(pids[-1], 15)
            except (OSError, ValueError):
                pass
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        for pid in filter(_alive, pids):
            os.kill(pid, 9)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, left by a daemon whose parent does not reap it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


if __name__ == "__main__":  # a cluster to try the SLURM launcher by hand, until Ctrl-C
    cluster = Cluster()
    print(f"export SLURM_CONF={cluster.conf}   # partition: {PARTITION}; Ctrl-C stops the cluster", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
