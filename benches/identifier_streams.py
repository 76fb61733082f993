#!/usr/bin/env python3
"""Writes the text streams the heavy-hitter comparison is scored on: identifiers
(`[A-Za-z_][A-Za-z0-9_]*`, one per line, in order of appearance) from source files.

    python3 benches/identifier_streams.py OUT_DIR [--events 1000000]

writes, each of the first `--events` identifiers:
  rust-idents.txt   the `.rs` files of the crates m-z that this workspace's Cargo.lock names, read
                    from their archives in the cargo registry (`cargo fetch` downloads them all)
  rust-tune.txt     its crates a-l: the stream the sketch's constants were chosen on, never scored
  python-idents.txt the `.py` files of this Python's standard library
The crates are the lockfile's, not whatever else the registry holds (other projects' builds add
to it), and archives and files are read in sorted order, so one commit of this workspace gives
the same Rust streams on every machine.
"""

import argparse
import glob
import os
import re
import sys
import sysconfig
import tarfile

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


def files_under(roots, suffix):
    for root in roots:
        for directory, subdirs, names in os.walk(root):
            subdirs.sort()
            for name in sorted(names):
                if name.endswith(suffix):
                    yield os.path.join(directory, name)


def rs_files_in(archives):
    """The text of each `.rs` file in the crate archives, archives and files in sorted order."""
    for archive in archives:
        with tarfile.open(archive, "r:gz") as crate:
            members = sorted(
                (m for m in crate.getmembers() if m.isfile() and m.name.endswith(".rs")),
                key=lambda m: m.name,
            )
            for member in members:
                yield crate.extractfile(member).read()


def texts_of(files):
    for file in files:
        try:
            with open(file, "rb") as f:
                yield f.read()
        except OSError:
            continue


def write_stream(path, texts, events):
    written = 0
    with open(path, "wb") as out:
        for text in texts:
            for ident in IDENT.findall(text):
                out.write(ident + b"\n")
                written += 1
                if written == events:
                    return written
    return written


def locked_registry_crates(lockfile):
    """(name, version) of every package Cargo.lock takes from a registry."""
    packages, package = [], None
    with open(lockfile, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "[[package]]":
                package = {}
                packages.append(package)
            elif package is not None and " = " in line:
                key, value = line.split(" = ", 1)
                package[key] = value.strip('"')
    return [
        (p["name"], p["version"])
        for p in packages
        if p.get("source", "").startswith("registry+")
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    registry = os.path.join(cargo_home, "registry", "cache")
    lockfile = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Cargo.lock")
    crates = []
    for name, version in locked_registry_crates(lockfile):
        pattern = os.path.join(glob.escape(registry), "*", f"{name}-{version}.crate")
        found = sorted(glob.glob(pattern))
        if not found:
            sys.exit(f"{name} {version} is not in {registry}: run `cargo fetch` first")
        crates.append(found[0])
    crates.sort(key=os.path.basename)
    by_letter = lambda first, last: [c for c in crates if first <= os.path.basename(c)[0].lower() <= last]
    stdlib = sysconfig.get_paths()["stdlib"]
    streams = {
        "rust-idents": rs_files_in(by_letter("m", "z")),
        "rust-tune": rs_files_in(by_letter("a", "l")),
        "python-idents": texts_of(files_under([stdlib], ".py")),
    }
    for name, files in streams.items():
        path = os.path.join(args.out_dir, f"{name}.txt")
        written = write_stream(path, files, args.events)
        if written < args.events:
            sys.exit(f"{name}: only {written} identifiers found")
        print(f"{path}: {written} identifiers")


if __name__ == "__main__":
    main()
