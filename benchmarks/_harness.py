"""What every benchmark here shares: the two glibc malloc settings DESIGN.md asks for, and running
a measurement in a fresh child process under one of them (the child prints JSON as its last line).

glibc maps and unmaps every large temporary by default (a page fault costs ~3 µs on these
machines); raising MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ keeps freed memory for reuse.
The variables are read when the process starts, hence the child processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(256 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(512 * 1024 * 1024)}
SETTINGS = (("glibc default malloc", {}), ("MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised", MALLOC_ENV))


def run_child(script, args, extra_env):
    """Run ``python script *args`` with the malloc variables set to ``extra_env`` (and the others
    removed); return the JSON object on its last line of output."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env.update(extra_env)
    p = subprocess.run([sys.executable, os.path.abspath(script), *map(str, args)], env=env,
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])
