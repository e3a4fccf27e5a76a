"""A short coverage-guided run of every decoder's fuzz target (the long runs are
`python -m loadtest.fuzz --runs 1000000`): each must run all its inputs without a crash."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loadtest.fuzz import TARGETS, build_target
from tests.gateway_process import ROOT

RUNS = 3000


def test_every_decoder_survives_a_short_fuzz_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "loadtest.fuzz", "--runs", str(RUNS), "--jobs", "2",
                             "--workdir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    table = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.split()[:1] != ["target"]}
    assert all(table[name] == [str(RUNS), "0"] for name in TARGETS), result.stdout


@pytest.mark.parametrize("name", TARGETS)
def test_a_fuzz_target_refuses_garbage_with_the_gateways_own_errors(name):
    one = build_target(name)
    for garbage in (b"", b"\x00", b"\xff" * 64, b"{" * 5000, b"[" * 100 + b"]" * 100, b"\x0a\xff\xff\xff\xff\x0f"):
        one(garbage)  # anything but a GatewayError would raise here
