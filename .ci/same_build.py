"""Checks that a detnoise wheel carries the very extension that is installed (and was just tested)."""

import hashlib
import pathlib
import sys
import zipfile

import detnoise._core as core

installed = hashlib.sha256(pathlib.Path(core.__file__).read_bytes()).hexdigest()
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(entry for entry in wheel.namelist() if entry.startswith("detnoise/_core"))
    built = hashlib.sha256(wheel.read(name)).hexdigest()
print(f"wheel {name}: sha256 {built[:16]}; the tested install: {installed[:16]}")
sys.exit(0 if built == installed else "the wheel's extension differs from the one the tests ran")
