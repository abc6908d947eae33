"""What the tools in tools/view share: `edgepool demo --keep` as a child process in its own process
group, stopped cleanly on exit (SIGINT to the group, 20 s, then SIGKILL; an embedded nats-server
that outlives it is killed by its pid), and /proc readers."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Failure(Exception):
    pass


class Demo:
    """`edgepool demo --keep` in its own process group; stderr is kept in memory and in a file."""

    def __init__(self, argv, logfile, say=print):
        self.say = say
        self.lines = []
        self.log = open(logfile, "a", encoding="utf-8")
        self.log.write(f"$ {' '.join(argv)}\n")
        self.log.flush()
        self.p = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.PIPE,
                                  text=True, errors="replace", start_new_session=True)
        self.nats_pid = None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stderr:
            self.lines.append(line.rstrip("\n"))
            self.log.write(line)
            self.log.flush()

    def find(self, pattern):
        for line in list(self.lines):
            if m := pattern.match(line):
                return m
        return None

    def check_alive(self, doing):
        if self.p.poll() is not None:
            raise Failure(f"the demo exited with status {self.p.returncode} while {doing}")

    def stop(self):
        """SIGINT to the group (the demo drains), up to 20 s, then SIGKILL to whatever is left in
        it. The embedded nats-server runs in a group of its own and gets SIGKILL from the kernel
        when the demo is gone; should it outlive the demo anyway, it is killed by its pid."""
        for sig, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                break  # the whole group is gone
            try:
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        if self.nats_pid and proc_comm(self.nats_pid) == "nats-server":
            time.sleep(1)
            if proc_comm(self.nats_pid) == "nats-server":
                self.say(f"nats-server (pid {self.nats_pid}) outlived the demo; killing it")
                try:
                    os.kill(self.nats_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.log.close()

    def tail(self, n=30):
        return "\n".join(self.lines[-n:]) or "(empty)"


def proc_stat(pid):
    """(comm, ppid, utime+stime in seconds) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_comm(pid):
    s = proc_stat(pid)
    return s[0] if s else None
