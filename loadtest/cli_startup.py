"""How long `telemetry-gateway` commands take to answer, as a person at a shell sees it.

    python -m loadtest.cli_startup            # 20 runs of each
    python -m loadtest.cli_startup --runs 50

Starts a gateway on a fresh embedded store, then times whole processes (the
installed `telemetry-gateway` script): `--help`, and `sql "SELECT 1"` sent
through the running gateway. Prints the median and the slowest run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.gateway_process import GatewayProcess

SCRIPT = Path(sys.executable).parent / "telemetry-gateway"


def timed(args: list[str], cwd: Path, runs: int) -> list[float]:
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(SCRIPT), *args], cwd=cwd, check=True, capture_output=True)
        spent.append(time.perf_counter() - started)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        gateway = GatewayProcess(Path(tmp)).start()
        try:
            for label, args in (("--help", ["--help"]),
                                ("sql 'SELECT 1' via the gateway", ["sql", "--config", str(gateway.config_path),
                                                                    "SELECT 1"])):
                spent = timed(args, Path(tmp), runs)
                print(f"{label:34s} median {statistics.median(spent) * 1000:6.0f} ms   "
                      f"slowest {max(spent) * 1000:6.0f} ms   ({runs} runs)")
        finally:
            gateway.stop()


if __name__ == "__main__":
    main()
