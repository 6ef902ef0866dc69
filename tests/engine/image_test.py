#!/usr/bin/env python3
"""The sluice image recipe (executors/kubernetes/image/Containerfile) holds
what its binaries need, checked without a container engine:

* every binary the runtime stage copies is built here, and starts
  (`--version`, exit 0);
* every shared library those binaries load belongs to a Debian package the
  runtime stage installs, or to one that debian:bookworm-slim already has
  (its Essential packages), or to a dependency of those, as apt installs
  them: found with ldd and dpkg on the build machine, which is Debian
  bookworm like the image.

Usage: image_test.py SOURCE_DIR BUILD_DIR
"""
import os
import re
import subprocess
import sys
import unittest

SOURCE, BUILD = sys.argv.pop(1), sys.argv.pop(1)
RECIPE = os.path.join(SOURCE, "executors", "kubernetes", "image", "Containerfile")


def runtime_stage(text):
    """(packages installed, {binary in the build tree: path in the image}) of the last stage."""
    stage = text[text.rindex("\nFROM "):]
    joined = stage.replace("\\\n", " ")
    packages = set()
    for line in joined.splitlines():
        if "apt-get install" in line:
            words = line.split("apt-get install", 1)[1].split("&&")[0].split()
            packages.update(w for w in words if not w.startswith("-"))
    copies = dict((src.replace("/src/build/", ""), dst)
                  for src, dst in re.findall(r"^COPY --from=build (\S+) (\S+)$", stage, re.M))
    return packages, copies


def package_of(path):
    """The Debian package that owns a library file (usr-merged paths too)."""
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/usr/lib/"):
            candidates.append(p[len("/usr"):])
        elif p.startswith("/lib/"):
            candidates.append("/usr" + p)
    for p in candidates:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


def installed_closure(roots):
    """`roots`, the Essential packages every Debian image has, and everything
    they depend on (Depends, Pre-Depends), as apt installs them."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Essential}\t${Depends}, ${Pre-Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    depends, essential = {}, set()
    for line in out.splitlines():
        name, is_essential, deps = line.split("\t")
        if is_essential == "yes":
            essential.add(name)
        # "a (>= 1), b | c" -> every alternative counts (one of them is installed).
        depends[name] = {d.strip().split(" ")[0].split(":")[0] for d in re.split(r"[,|]", deps) if d.strip()}
    seen, todo = set(), list(roots) + list(essential)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(depends.get(p, ()))
    return seen


class ImageRecipeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(RECIPE) as f:
            cls.packages, cls.copies = runtime_stage(f.read())

    def test_it_copies_the_four_programs(self):
        self.assertEqual(sorted(os.path.basename(b) for b in self.copies),
                         ["sluice", "sluice-launcher", "sluice-serving", "sluice-supervise"])
        for binary, dest in self.copies.items():
            self.assertEqual(dest, "/usr/local/bin/" + os.path.basename(binary))

    def test_each_program_starts(self):
        for binary in self.copies:
            path = os.path.join(BUILD, binary)
            with self.subTest(binary=binary):
                self.assertTrue(os.path.exists(path), f"{path} is not built")
                if binary.endswith("sluice-supervise"):
                    # Started only by the local executor, with its arguments:
                    # without them it says how it is used.
                    r = subprocess.run([path], capture_output=True, text=True, timeout=30)
                    self.assertIn("sluice-supervise", r.stdout + r.stderr)
                    continue
                r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertRegex(r.stdout + r.stderr, r"\d+\.\d+\.\d+")

    def test_the_runtime_stage_installs_every_library_they_load(self):
        installed = installed_closure(self.packages)
        for binary in self.copies:
            path = os.path.join(BUILD, binary)
            ldd = subprocess.run(["ldd", path], capture_output=True, text=True)
            if "not a dynamic executable" in ldd.stdout + ldd.stderr:
                continue  # linked statically: it loads nothing
            self.assertEqual(ldd.returncode, 0, ldd.stderr)
            ldd = ldd.stdout
            self.assertNotIn("not found", ldd)
            for lib in re.findall(r"=> (/\S+)", ldd):
                package = package_of(lib)
                with self.subTest(binary=binary, library=lib):
                    self.assertIsNotNone(package, f"no Debian package owns {lib}")
                    self.assertTrue(package in installed,
                                    f"{binary} loads {lib} from {package}, which the runtime stage does not "
                                    f"install (it installs: {' '.join(sorted(self.packages))})")


if __name__ == "__main__":
    unittest.main()
