#!/usr/bin/env python3
"""Runs a command and reports its wall time and whose CPU it was.

    proc_cpu.py [--label L] [--quiet] -- COMMAND [ARG...]

Prints one line:
    L wall=<s> self=<s> supervisor=<s> rest=<s> peak_rss_mb=<MB>
where `self` is the command's own user+sys CPU (sluice's, threads included),
`supervisor` that of its sluice-supervise children (their own CPU, not their
steps'), `rest` everything else it waited for (the steps, and any other
child), and peak_rss_mb its own peak resident set. The process's own and its
supervisors' CPU are read from /proc/PID/stat every 10 ms while they live
(the last reading before each exits counts), so up to 10 ms of each is
missed; the total (self + supervisor + rest) comes from wait4() and is exact.
With --quiet the command's stdout goes to /dev/null. Exit status: the
command's.
"""
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid):
    """user+sys seconds of one process (its own, no children), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    args = sys.argv[1:]
    label = "run"
    if args[:1] == ["--label"]:
        label, args = args[1], args[2:]
    quiet = False
    if args[:1] == ["--quiet"]:
        quiet, args = True, args[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        if quiet:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
        os.execvp(args[0], args)
    own = 0.0
    sups = {}
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done == pid:
            break
        c = cpu_of(pid)
        if c is not None:
            own = c
        for child in children(pid):
            if comm(child) == "sluice-supervis":  # comm is cut at 15 characters
                c = cpu_of(child)
                if c is not None:
                    sups[child] = c
        time.sleep(0.01)
    wall = time.monotonic() - t0
    total = usage.ru_utime + usage.ru_stime
    sup = sum(sups.values())
    print(f"{label} wall={wall:.3f} self={own:.2f} supervisor={sup:.2f} rest={max(0.0, total - own - sup):.2f} "
          f"peak_rss_mb={usage.ru_maxrss / 1024:.1f}", flush=True)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
