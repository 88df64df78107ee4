"""Start-up: `404-run --help`, `404-cli --help` and `404-run validate` of a small manifest, against
`python -c pass` measured in the same run (same interpreter, same machine state).

Each command runs `--repeat` times as a child process, interleaved round-robin so that drift of
the machine affects all alike; the figure is the median wall time (spawn to exit). Target ≤ 0.2 s
each. `--importtime` adds the heaviest imports of each command (python -X importtime).

    python benchmarks/startup.py [--repeat K] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import report

BIN = Path(sys.executable).parent
SMALL = """\
version: 1
name: small
provider: local
pods:
  renderer: {preset: renderer, command: python -m runner404.sim renderer}
stages:
  render: {uses: render, pod: renderer, input: js/}
"""


def commands(folder: Path) -> dict[str, list[str]]:
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "404-run --help": [str(BIN / "404-run"), "--help"],
        "404-cli --help": [str(BIN / "404-cli"), "--help"],
        "404-run validate small.yaml": [str(BIN / "404-run"), "validate", str(folder / "small.yaml")],
    }


def timed(argv: list[str], cwd: Path, limit: float = 60.0) -> tuple[float, int]:
    # A blocking wait(): with a timeout, subprocess polls with sleeps doubling up to 50 ms, which
    # rounds every figure up to the next poll (0.066 s would read 0.115 s); a timer kills a hung child.
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "COLUMNS": "100"})
    watchdog = threading.Timer(limit, child.kill)
    watchdog.start()
    try:
        code = child.wait()
    finally:
        watchdog.cancel()
    return time.perf_counter() - started, code


def heaviest_imports(argv: list[str], cwd: Path, top: int = 8) -> list[str]:
    """The slowest imports (cumulative µs) of one run under -X importtime."""
    script = argv[0]
    if script.endswith(("404-run", "404-cli")):
        entry = "run" if script.endswith("404-run") else "classic"
        argv = [sys.executable, "-X", "importtime", "-c",
                f"import sys; from runner404.cli.{entry} import entry; sys.argv = {argv!r}; entry()"]
    else:
        argv = [argv[0], "-X", "importtime", *argv[1:]]
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.split("|", 2)
            rows.append((int(cumulative.strip()), name.rstrip()))
    top_level = [(us, name) for us, name in rows if not name.startswith("  ")]
    return [f"{us / 1000:7.1f} ms {name.strip()}" for us, name in sorted(top_level, reverse=True)[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 repeats")
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    repeat = 5 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="runner404-bench-startup-") as tmp:
        folder = Path(tmp)
        (folder / "small.yaml").write_text(SMALL)
        (folder / "js").mkdir()
        runs = commands(folder)
        times: dict[str, list[float]] = {name: [] for name in runs}
        codes: dict[str, set[int]] = {name: set() for name in runs}
        for name, argv in runs.items():  # warm the page cache and the .pyc files once
            timed(argv, folder)
        for _ in range(repeat):
            for name, argv in runs.items():
                seconds, code = timed(argv, folder)
                times[name].append(seconds)
                codes[name].add(code)
        medians = {name: statistics.median(values) for name, values in times.items()}
        base = medians["python -c pass"]
        rows = [(f"{name} (s)", medians[name], "baseline" if name == "python -c pass" else "≤ 0.2")
                for name in runs]
        rows += [(f"{name} − python (s)", medians[name] - base, "") for name in runs if name != "python -c pass"]
        extra = {"command": "python benchmarks/startup.py" + (" --quick" if args.quick else ""),
                 "samples": times, "exit_codes": {k: sorted(v) for k, v in codes.items()}, "repeat": repeat,
                 "primary": {"figure": "slowest command (s)",
                             "value": max(v for k, v in medians.items() if k != "python -c pass"),
                             "target": 0.2, "higher_is_better": False}}
        if args.importtime:
            extra["importtime"] = {name: heaviest_imports(argv, folder) for name, argv in runs.items()
                                   if name != "python -c pass"}
            for name, lines in extra["importtime"].items():
                print(f"\n{name}: heaviest imports")
                print("\n".join(f"  {line}" for line in lines))
        report("startup", rows, extra)


if __name__ == "__main__":
    main()
