"""Write the store `v10_store.tar.gz` and its rows `v10_rows.jsonl` with the release of schema version 10
(metadata on every point of the kind tables), as `make_v6_store.py` does for version 6.

Run from the repository root with that release's package first on the path:

    git worktree add /tmp/v10 b69a057
    mkdir -p /tmp/v10pkg/telemetry_gateway
    for d in gateway adapters schema; do ln -s /tmp/v10/$d /tmp/v10pkg/telemetry_gateway/$d; done
    PYTHONPATH=/tmp/v10pkg .venv/bin/python -m tests.store.testdata.make_v10_store

`tests/store/test_layout_migration.py` opens the store with this release and
checks that `metric_points` still gives these rows.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from telemetry_gateway.adapters.attributes import AttributeSets
from telemetry_gateway.gateway.store.embedded import EmbeddedStore
from telemetry_gateway.schema import POINTS
from telemetry_gateway.schema.migrations import latest_version
from tests.store.testdata.make_v6_store import DATABASE, NS, RECEIVED, SDK_PAYLOAD, batch, every_kind

HERE = Path(__file__).parent


def main() -> None:
    assert latest_version() == 10, "run this with the release of schema version 10 first on PYTHONPATH"
    sets = AttributeSets()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        store = EmbeddedStore("default", DATABASE, data)
        store.open()
        requests = [
            (SDK_PAYLOAD.read_bytes(), RECEIVED, "1f0e2d3c4b5a6978"),
            (every_kind(RECEIVED - NS, ""), RECEIVED, "1f0e2d3c4b5a6979"),
            # The same series a minute later, now described: each point keeps its own description.
            (every_kind(RECEIVED + 59 * NS, "described later"), RECEIVED + 60 * NS, "1f0e2d3c4b5a697a"),
            (every_kind(RECEIVED + 119 * NS, "described later", service="billing"), RECEIVED + 120 * NS,
             "00112233445566778899aabbccddeeff"),
        ]
        for i, (raw, received, batch_id) in enumerate(requests):
            store.insert_group(POINTS, batch(raw, received, batch_id, sets), f"{i + 1:032x}")
        out = store.execute(f"SELECT * FROM {DATABASE}.metric_points ORDER BY series_id, time, kind",
                            fmt="JSONEachRow")
        (HERE / "v10_rows.jsonl").write_bytes(out)
        store.close()
        shutil.rmtree(data / "chdb" / "data" / "system", ignore_errors=True)  # query logs: not needed, large
        with tarfile.open(HERE / "v10_store.tar.gz", "w:gz") as tar:
            tar.add(data, arcname="data")
    print(f"{len(out.splitlines())} rows; {(HERE / 'v10_store.tar.gz').stat().st_size} bytes")


if __name__ == "__main__":
    main()
