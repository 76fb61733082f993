#!/usr/bin/env python3
"""Writes the text streams the heavy-hitter comparison is scored on: identifiers
(`[A-Za-z_][A-Za-z0-9_]*`, one per line, in order of appearance) from source files.

    python3 benches/identifier_streams.py OUT_DIR [--events 1000000]

writes, each of the first `--events` identifiers:
  rust-idents.txt   the `.rs` files of the crates m-z of the cargo registry (`cargo fetch` fills it)
  rust-tune.txt     the crates a-l: the stream the sketch's constants were chosen on, never scored
  python-idents.txt the `.py` files of this Python's standard library
Directories and files are walked in sorted order, so a registry with the same crates gives the
same streams.
"""

import argparse
import os
import re
import sys
import sysconfig

IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


def files_under(roots, suffix):
    for root in roots:
        for directory, subdirs, names in os.walk(root):
            subdirs.sort()
            for name in sorted(names):
                if name.endswith(suffix):
                    yield os.path.join(directory, name)


def write_stream(path, files, events):
    written = 0
    with open(path, "wb") as out:
        for file in files:
            try:
                with open(file, "rb") as f:
                    text = f.read()
            except OSError:
                continue
            for ident in IDENT.findall(text):
                out.write(ident + b"\n")
                written += 1
                if written == events:
                    return written
    return written


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    registry = os.path.join(cargo_home, "registry", "src")
    crates = sorted(
        os.path.join(index, crate)
        for index in (os.path.join(registry, d) for d in sorted(os.listdir(registry)))
        for crate in os.listdir(index)
    )
    by_letter = lambda first, last: [c for c in crates if first <= os.path.basename(c)[0].lower() <= last]
    stdlib = sysconfig.get_paths()["stdlib"]
    streams = {
        "rust-idents": files_under(by_letter("m", "z"), ".rs"),
        "rust-tune": files_under(by_letter("a", "l"), ".rs"),
        "python-idents": files_under([stdlib], ".py"),
    }
    for name, files in streams.items():
        path = os.path.join(args.out_dir, f"{name}.txt")
        written = write_stream(path, files, args.events)
        if written < args.events:
            sys.exit(f"{name}: only {written} identifiers found")
        print(f"{path}: {written} identifiers")


if __name__ == "__main__":
    main()
