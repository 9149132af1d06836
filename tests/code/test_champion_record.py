"""The local copy's `champion.json` is written safely by writers racing each other."""

from __future__ import annotations

import threading
from pathlib import Path

from scoring.champions import ChampionRecord, _read_record, _write_record


def test_services_writing_the_champion_record_at_once_all_succeed(tmp_path: Path) -> None:
    """A reload and the reload watch of another service in the same process load at once and
    both write the record: with one staging name per process, one of them failed (a 500 on
    POST /v1/admin/reload in CI)."""
    (tmp_path / "lead-conversion").mkdir()
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def write(version: int) -> None:
        start.wait()
        for _ in range(200):
            try:
                _write_record(ChampionRecord("lead-conversion", str(version), None), tmp_path)
            except BaseException as error:  # the test counts every failure
                failures.append(error)

    threads = [threading.Thread(target=write, args=(v,)) for v in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    record = _read_record("lead-conversion", tmp_path)
    assert record is not None and record.version in {"0", "1", "2", "3"}
    assert [p.name for p in (tmp_path / "lead-conversion").iterdir()] == ["champion.json"]
