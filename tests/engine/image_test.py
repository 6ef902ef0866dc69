#!/usr/bin/env python3
"""The sluice image recipe (executors/kubernetes/image/Containerfile) holds
what its binaries need, checked without a container engine:

* every binary the runtime stage copies is built here, and starts
  (`--version`, exit 0);
* every shared library those binaries load belongs to a Debian package the
  runtime stage installs, or to one that debian:bookworm-slim already has
  (priority `required`): found with ldd and dpkg on the build machine,
  which is Debian bookworm like the image.

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


def required_packages():
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Priority}\n"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.endswith(" required")}


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
        base = required_packages()
        for binary in self.copies:
            path = os.path.join(BUILD, binary)
            ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
            self.assertNotIn("not found", ldd)
            for lib in re.findall(r"=> (/\S+)", ldd):
                package = package_of(lib)
                with self.subTest(binary=binary, library=lib):
                    self.assertIsNotNone(package, f"no Debian package owns {lib}")
                    self.assertTrue(package in self.packages or package in base,
                                    f"{binary} loads {lib} from {package}, which the runtime stage does not "
                                    f"install (it installs: {' '.join(sorted(self.packages))})")


if __name__ == "__main__":
    unittest.main()
