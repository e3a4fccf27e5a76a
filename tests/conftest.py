import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest

from tests.gateway_process import GatewayProcess


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A real gateway process shared by a test module (tests isolate by names)."""
    proc = GatewayProcess(tmp_path_factory.mktemp("gateway")).start()
    yield proc
    code = proc.stop()
    assert code == 0, f"gateway exited with {code}:\n{proc.log()}"


@pytest.fixture(scope="module", params=[0, 2], ids=["one-process", "two-workers"])
def listener_gateway(request, tmp_path_factory):
    """A module's gateway serving the OTLP listeners itself, then through two listener workers
    (`receivers.otlp.workers`), so each test shows both give the same answers."""
    workers = {"receivers": {"otlp": {"workers": request.param}}}
    proc = GatewayProcess(tmp_path_factory.mktemp("gateway"), workers).start()
    yield proc
    code = proc.stop()
    assert code == 0, f"gateway exited with {code}:\n{proc.log()}"


@pytest.fixture
def start_gateway(tmp_path):
    """Start a gateway with config overrides for one test."""
    started = []

    def start(overrides: dict | None = None, name: str = "gw", faults: bool = False) -> GatewayProcess:
        workdir = tmp_path / f"{name}{len(started)}"
        workdir.mkdir()
        proc = GatewayProcess(workdir, overrides, faults).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def embedded_path(tmp_path_factory):
    # chDB holds one data directory per process: every in-process test shares it,
    # each with its own database.
    return tmp_path_factory.mktemp("chdb")
