"""``progresskit status`` on both target forms: a file store's mlruns/ and sqlite:///."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from progresskit_mlflow.vocabulary import MLFLOW_STATUSES, STATUS_CODES

from mlflow_samples import DB_RUNS, FILE_RUNS, copy_database, copy_mlruns
from progresskit.testing import CliResult

DOCS = Path(__file__).resolve().parents[3] / "docs" / "mlflow.md"
Cli = Callable[..., CliResult]

#: The samples are from December 2026: kept from turning outdated as the years pass; a
#: RUNNING run silent for an hour is failed.
CONFIG = "sleep_time: 3600\noutdated_days: 100000\n"
EXPECTED = {"finish": "finished", "fail": "failed", "kill": "failed", "fail_nowith": "finished"}


def test_status_of_a_file_store(tmp_path: Path, progresskit_cli: Cli) -> None:
    copy_mlruns(tmp_path)
    (tmp_path / "progresskit.yaml").write_text(CONFIG, encoding="utf-8")
    result = progresskit_cli("status", "mlruns/", "--json", cwd=tmp_path)
    assert result.ret == 1, result.stderr  # one failed run, one killed: unhealthy
    runs = result.json()["runs"]
    assert len(runs) == 4
    by_id = {r["progress"]["details"]["run_id"]: r for r in runs}
    assert {k: by_id[v]["status"] for k, v in FILE_RUNS.items()} == EXPECTED
    assert by_id[FILE_RUNS["kill"]]["progress"]["source_status"] == "RUNNING"
    assert result.json()["summary"]["unrecognised"] == 0


def test_status_of_a_sqlite_store(tmp_path: Path, progresskit_cli: Cli) -> None:
    copy_database(tmp_path)
    (tmp_path / "progresskit.yaml").write_text(CONFIG, encoding="utf-8")
    result = progresskit_cli("status", "sqlite:///mlflow.db", "--json", cwd=tmp_path)
    assert result.ret == 1, result.stderr
    by_id = {r["progress"]["details"]["run_id"]: r for r in result.json()["runs"]}
    assert {k: by_id[v]["status"] for k, v in DB_RUNS.items()} == EXPECTED
    assert by_id[DB_RUNS["kill"]]["config"] == f"sqlite:///mlflow.db#{DB_RUNS['kill']}"

    table = progresskit_cli("status", "sqlite:///mlflow.db", cwd=tmp_path)
    assert "2 failed, 2 finished" in table.stdout, table.stdout


def test_a_store_that_cannot_be_read_exits_2(tmp_path: Path, progresskit_cli: Cli) -> None:
    result = progresskit_cli("status", "sqlite:///missing.db", cwd=tmp_path)
    assert result.ret == 2
    assert "sqlite:///missing.db: no such file" in result.stderr
    assert not (tmp_path / "missing.db").exists()


def test_a_clean_interpreter_loads_the_plugin(tmp_path: Path, progresskit_cli: Cli) -> None:
    copy_database(tmp_path)
    result = progresskit_cli("status", "sqlite:///mlflow.db", "--json", cwd=tmp_path,
                             in_process=False)
    assert result.ret in (0, 1), result.stderr
    assert len(result.json()["runs"]) == 4


def test_docs_mapping_table_is_the_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `(\d)` \| `(\w+)` \|", text, re.MULTILINE)
    assert {(word, int(code), status) for word, code, status in rows} == {
        (word, code, MLFLOW_STATUSES[word].value) for code, word in STATUS_CODES.items()
    }
