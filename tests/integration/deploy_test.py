#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Deploying ktlsd (issue 16), with the real binary:

    deploy_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

version        --version / -V name version, commit, OpenSSL and liburing; bare ktlsd: exit 2
"""
import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, main  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(env, args, **kw):
    return subprocess.run([env.args.ktlsd] + args, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 20), **kw)


def t_version(env):
    for flag in ("--version", "-V"):
        r = run(env, [flag])
        check(r.returncode == 0, f"{flag}: exit {r.returncode} {r.stderr!r}")
        out = r.stdout
        check(re.match(r"ktlsd \d+\.\d+\.\d+\n", out), f"{flag}: first line: {out!r}")
        check(re.search(r"^commit: [0-9a-f]{7,}(-dirty)?$|^commit: unknown$", out, re.M),
              f"{flag}: no commit: {out!r}")
        check(re.search(r"^openssl: OpenSSL 3\.", out, re.M), f"{flag}: no OpenSSL: {out!r}")
        check(re.search(r"^liburing: 2\.\d+", out, re.M), f"{flag}: no liburing: {out!r}")
    r = run(env, [])
    check(r.returncode == 2 and "usage: ktlsd" in r.stderr and not r.stdout,
          f"bare ktlsd: exit {r.returncode} {r.stderr!r}")
    print(run(env, ["--version"]).stdout.strip())


TESTS = {
    "version": t_version,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
