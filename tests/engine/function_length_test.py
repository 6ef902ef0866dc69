#!/usr/bin/env python3
"""No function in product code (engine/, dsl/, executors/, operators/) is
longer than 200 lines.

A function is a top-level brace block (at namespace or class scope) whose
opening line looks like a definition: it has a parameter list and is not a
namespace, class, struct, enum, union or an initializer. Lambdas count as
part of the function that holds them. Comments and string literals are
skipped when braces are counted.

Run: function_length_test.py <source dir> [limit]. Prints each function over
the limit as file:line: name (N lines) and exits 1 when there is one.
"""
import os
import re
import sys

PRODUCT = ("engine", "dsl", "executors", "operators")
NOT_FUNCTION = re.compile(r'^\s*(namespace|class|struct|enum|union|extern)\b|=\s*$|=\s*\{?$')


def strip(text):
    """`text` with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif text.startswith('R"', i):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if m:
                end = text.find(")" + m.group(1) + '"', i)
                j = n if end < 0 else end + len(m.group(1)) + 2
                out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
                i = j
            else:
                out.append(c)
                i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (min(j + 1, n) - i))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(text):
    """(start line, line count, head) of each function-like block."""
    code = strip(text)
    lines = code.split("\n")
    found = []
    depth = 0
    scopes = []  # for each open brace: True when it is a namespace/class scope
    head_start = 0
    for lineno, line in enumerate(lines, 1):
        for ch in line:
            if ch == "{":
                in_scope = all(scopes)
                # The text since the previous ; { or } at this level is the head.
                head = " ".join(l.strip() for l in lines[head_start - 1:lineno]) if head_start else line
                is_scope = bool(re.search(r'\b(namespace|class|struct|enum|union)\b[^()]*$', head.split("{")[0]))
                is_function = in_scope and not is_scope and "(" in head and not re.search(r'=\s*$', head.split("{")[0].rstrip())
                scopes.append(is_scope or (in_scope and not is_function and not ("(" in head)))
                if is_function:
                    found.append([lineno, None, head.split("{")[0].strip()[-120:], len(scopes)])
                depth += 1
            elif ch == "}":
                if scopes:
                    level = len(scopes)
                    scopes.pop()
                    for f in found:
                        if f[1] is None and f[3] == level:
                            f[1] = lineno - f[0] + 1
                depth -= 1
            if ch in ";{}":
                head_start = lineno
        if line.strip() == "":
            head_start = lineno + 1
    return [(a, b, c) for a, b, c, _ in found if b is not None]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    long = []
    count = 0
    for top in PRODUCT:
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith(".cc"):
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                with open(full, encoding="utf-8") as f:
                    for start, length, head in functions(f.read()):
                        count += 1
                        if length > limit:
                            long.append((length, f"{rel}:{start}: {head} ({length} lines)"))
    for _, text in sorted(long, reverse=True):
        print(text)
    if count == 0:
        print("no functions found under", root)
        return 1
    print(f"{count} functions checked, {len(long)} longer than {limit} lines")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
