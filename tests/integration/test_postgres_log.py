"""The PostgreSQL prediction log against a real PostgreSQL (Debian's package) on loopback."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import psycopg
import pytest

from tests.api.test_monitoring import holdout_rows
from tests.conftest import TITANIC
from tests.integration.debian import apt_install
from tests.integration.server import free_port, running_server

pytestmark = pytest.mark.slow


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        apt_install("postgresql", needed_for="a real PostgreSQL for the prediction log")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    assert found, "Debian's postgresql did not install"
    return Path(found[-1]).parent


@dataclass
class Postgres:
    """A throwaway cluster: initdb in a temporary folder, one server on a loopback port."""

    bin: Path
    data: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://fastinfer@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", "postgres", "--", *command]  # postgres refuses to run as root

    def init(self) -> None:
        subprocess.run(
            self._as_owner(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "fastinfer", "-A", "trust"]
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        command = [
            str(self.bin / "postgres"),
            "-D", str(self.data),
            "-p", str(self.port),
            "-k", str(self.data),  # its unix socket stays in the temporary folder
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            self._as_owner(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "postgres did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def count(self, sql: str) -> int:
        with psycopg.connect(self.dsn) as connection:
            row = connection.execute(sql).fetchone()
            assert row is not None
            return int(row[0])


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    folder = Path(tempfile.mkdtemp(prefix="fastinfer-pg-"))  # readable by the postgres user
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    cluster = Postgres(postgres_bin(), folder / "data", free_port())
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_predictions_reach_postgres_even_when_it_was_down_for_a_while(
    examples_built: None, postgres: Postgres, tmp_path: Path
) -> None:
    env = {
        "FASTINFER_PREDICTION_LOG": "postgres",
        "FASTINFER_PREDICTION_LOG_DSN": postgres.dsn,
        "FASTINFER_PREDICTION_LOG_FLUSH_S": "0.2",
    }
    rows = holdout_rows()[:40]
    with running_server([str(TITANIC), "--workers", "2"], tmp_path / "log", env=env) as server:

        def predict(request_id: str, row: int) -> None:
            response = httpx.post(
                f"{server.url}/v1/models/titanic/predict",
                json={"inputs": [rows[row], rows[row + 1]]},
                headers={"X-Request-ID": request_id},
            )
            assert response.status_code == 200  # the log's trouble is never the client's

        for i in range(30):  # the database is not up yet: the batches wait in the buffer
            predict(f"early-{i}", i)
        postgres.start()
        for i in range(30):
            predict(f"late-{i}", i)
        deadline = time.monotonic() + 20  # written as soon as the sink reconnects
        while True:
            try:
                written = postgres.count("SELECT count(*) FROM fastinfer_predictions")
            except psycopg.errors.UndefinedTable:
                written = 0
            if written == 120 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert written == 120
        feedback = httpx.post(
            f"{server.url}/v1/models/titanic/feedback",
            json={"request_id": "late-3", "row": 1, "outcome": "died"},
        )
        assert feedback.status_code == 200, feedback.text
        assert server.stop() == 0  # the feedback record is flushed at the latest now
    assert postgres.count("SELECT count(DISTINCT request_id) FROM fastinfer_predictions") == 60
    assert postgres.count("SELECT count(*) FROM fastinfer_predictions WHERE row_index = 1") == 60
    assert (
        postgres.count(
            "SELECT count(*) FROM fastinfer_predictions p JOIN fastinfer_feedback f "
            "USING (request_id, row_index) WHERE p.input->>'Name' = "
            f"'{rows[4]['Name'].replace(chr(39), chr(39) * 2)}' AND f.outcome = '\"died\"'"
        )
        == 1
    )


def test_every_prediction_is_in_postgres_after_sigterm(
    examples_built: None, postgres: Postgres, tmp_path: Path
) -> None:
    postgres.start()
    env = {
        "FASTINFER_PREDICTION_LOG": "postgres",
        "FASTINFER_PREDICTION_LOG_DSN": postgres.dsn,
        "FASTINFER_PREDICTION_LOG_FLUSH_S": "3600",  # nothing is written before the shutdown
    }
    rows = holdout_rows()
    with running_server([str(TITANIC), "--workers", "2"], tmp_path / "log", env=env) as server:
        with httpx.Client(base_url=server.url) as client:
            for i in range(100):
                response = client.post(
                    "/v1/models/titanic/predict",
                    json={"inputs": [rows[i]]},
                    headers={"X-Request-ID": f"r-{i}"},
                )
                assert response.status_code == 200
        assert server.stop() == 0
    assert postgres.count("SELECT count(DISTINCT request_id) FROM fastinfer_predictions") == 100
