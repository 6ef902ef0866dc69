#!/usr/bin/env python3
"""System calls per program, per step, from `strace -f -o FILE` output.

  syscalls_by_program.py FILE STEPS

A process counts as the program it last exec'd; a child that has not
exec'd yet counts as its parent's program (sluice-supervise's forked child
sets the step up before its exec: that is the supervisor's work). Prints
one line per program, most calls first, with its 16 most frequent calls.
"""
import collections
import re
import sys

LINE = re.compile(r'^(\d+)\s+(?:<\.\.\. )?(\w+)(\(| resumed>)(.*)$')
RESULT = re.compile(r'\)\s+= (-?\d+)')


def main():
    path, steps = sys.argv[1], int(sys.argv[2])
    calls = []  # (line number, pid, syscall) for each call started
    parent = {}  # child pid -> (parent pid, line number of the clone)
    execs = collections.defaultdict(list)  # pid -> [(line number, program)]
    exec_path = {}  # pid -> path of its last execve call
    first = None
    with open(path) as f:
        for i, line in enumerate(f):
            m = LINE.match(line)
            if not m:
                continue
            pid, name, kind, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
            first = pid if first is None else first
            if kind == "(":
                calls.append((i, pid, name))
                if name == "execve":
                    p = re.match(r'"([^"]*)"', rest)
                    exec_path[pid] = p.group(1).rsplit("/", 1)[-1] if p else "?"
            r = None if "<unfinished" in rest else RESULT.search(rest)
            if r is None:
                continue
            value = int(r.group(1))
            if name in ("clone", "clone3", "fork", "vfork") and value > 0:
                parent[value] = (pid, i)
            elif name == "execve" and value == 0:
                execs[pid].append((i, exec_path.get(pid, "?")))

    def program(pid, at):
        done = [p for i, p in execs.get(pid, []) if i <= at]
        if done:
            return done[-1]
        if pid in parent:
            return program(*parent[pid])
        return "(first process)" if pid == first else "?"

    counts = collections.defaultdict(collections.Counter)
    for i, pid, name in calls:
        counts[program(pid, i)][name] += 1
    for prog, c in sorted(counts.items(), key=lambda kv: -sum(kv[1].values())):
        top = ", ".join(f"{k} {v / steps:.2f}" for k, v in c.most_common(16))
        print(f"{prog}: {sum(c.values()) / steps:.2f} per step ({top})")


if __name__ == "__main__":
    main()
