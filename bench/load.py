"""Closed-loop load with wrk and a Lua script that POSTs a JSON body and reports JSON."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson

from bench.common import BENCH, HOST

LUA_SCRIPT = BENCH / "wrk" / "post.lua"
WRK_THREADS = 2
WRK_TIMEOUT = "5s"  # a request slower than this counts as a timeout error
_MARKER = "BENCH_JSON "


class WrkMissingError(RuntimeError):
    """wrk is not installed and could not be installed."""


def ensure_wrk() -> str:
    """The path of wrk; installs the Debian package when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    how = "install it with `sudo apt-get install -y wrk` (Debian/Ubuntu) and run again"
    if os.geteuid() != 0:
        raise WrkMissingError(f"wrk is not installed: {how}")
    print("bench: wrk is missing; installing the Debian package (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, check=False, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
        subprocess.run(install, env=env, check=False, timeout=600)
    found = shutil.which("wrk")
    if not found:
        raise WrkMissingError(f"wrk could not be installed: {how}")
    return found


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r"wrk\s+(\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def run_wrk(
    wrk: str,
    port: int,
    path: str,
    body: Path,
    connections: int,
    duration_s: int,
    threads: int = WRK_THREADS,
) -> dict[str, Any]:
    """One closed-loop run; the numbers from the script's done() plus derived req/s and errors."""
    threads = max(1, min(threads, connections))  # wrk refuses more threads than connections
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(LUA_SCRIPT),
        f"http://{HOST}:{port}{path}",
        "--",
        str(body),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    parsed = parse_wrk_output(out.stdout)
    if parsed is None:
        raise RuntimeError(
            f"wrk exited with {out.returncode} and no result line:\n{out.stdout}\n{out.stderr}"
        )
    seconds = parsed["duration_us"] / 1e6
    errors = parsed["errors"]
    parsed.update(
        command=" ".join(argv),
        threads=threads,
        connections=connections,
        seconds=round(seconds, 3),
        req_per_s=round(parsed["requests"] / seconds, 1) if seconds > 0 else 0.0,
        errors_total=sum(int(v) for v in errors.values()),
    )
    return parsed


def parse_wrk_output(stdout: str) -> dict[str, Any] | None:
    """The JSON object the Lua script's done() printed after its marker, if any."""
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            result: dict[str, Any] = orjson.loads(line[len(_MARKER) :])
            return result
    return None
