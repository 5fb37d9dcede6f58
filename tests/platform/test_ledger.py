"""The tile ledger: records read back as written, the last line of a tile wins, crashes leave whole lines."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from geoloom.platform.ledger import Ledger, TileRecord


def _rec(key: str, state: str = "done", **kw: object) -> TileRecord:
    """A record of tile ``key`` (row/col taken from the key's digits when present)."""
    parts = key.split("-")
    row, col = (int(parts[1]), int(parts[2])) if len(parts) >= 3 and parts[1].isdigit() else (0, 0)
    return TileRecord(key=key, row=row, col=col, state=state, **kw)  # type: ignore[arg-type]


def test_record_round_trips_through_json_with_every_field():
    rec = TileRecord(
        key="tile-3-7-abc", row=3, col=7, state="failed", attempts=3,
        seconds={"read": 0.25, "model": 1.5, "write": 0.01, "total": 1.76},
        error="ImageryReadError: band nir of S2B_1 could not be read — retry later",
        worker="tcp://127.0.0.1:4242", detections=12, scenes=("S2B_2", "S2A_1"),
    )
    line = rec.to_json()
    assert "\n" not in line
    back = TileRecord.from_dict(json.loads(line))
    assert back == rec
    assert isinstance(back.scenes, tuple)
    assert back.to_json() == line  # stable text: sorted keys


def test_record_from_an_older_or_newer_ledger_line_keeps_known_fields():
    d = {"key": "tile-0-1-x", "row": 0, "col": 1, "state": "done", "scenes": None, "gpu_seconds": 3.0}
    rec = TileRecord.from_dict(d)
    assert rec == TileRecord(key="tile-0-1-x", row=0, col=1, state="done")
    assert d["scenes"] is None, "the caller's dict is not changed"


def test_records_of_a_missing_ledger_are_empty(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert ledger.records() == {}
    assert ledger.done_keys() == set()
    assert ledger.drop_torn_tail() is False
    assert not ledger.path.exists()


def test_last_record_of_a_tile_wins(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(_rec("tile-0-0-t", "running"))
    ledger.append(_rec("tile-0-1-t", "done", detections=2))
    ledger.append(_rec("tile-0-0-t", "failed", attempts=2, error="boom"))
    ledger.append(_rec("tile-0-0-t", "done", attempts=3, scenes=("S1",)))
    recs = Ledger(ledger.path).records()  # a fresh reader: all state is in the file
    assert set(recs) == {"tile-0-0-t", "tile-0-1-t"}
    assert recs["tile-0-0-t"] == _rec("tile-0-0-t", "done", attempts=3, scenes=("S1",))
    assert recs["tile-0-1-t"].detections == 2
    assert len(ledger.path.read_text().splitlines()) == 4, "append-only: earlier lines stay"


def test_done_keys_are_the_tiles_whose_latest_state_is_done(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(_rec("tile-0-0-t", "failed"))
    ledger.append(_rec("tile-0-0-t", "done"))  # retried later: done
    ledger.append(_rec("tile-0-1-t", "done"))
    ledger.append(_rec("tile-0-1-t", "failed"))  # done, then recomputed and failed: not done
    ledger.append(_rec("tile-1-0-t", "running"))
    ledger.append(_rec("tile-1-1-t", "done"))
    assert ledger.done_keys() == {"tile-0-0-t", "tile-1-1-t"}


def test_counts_treat_unrecorded_and_running_tiles_as_pending(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(_rec("a", "done"))
    ledger.append(_rec("b", "failed"))
    ledger.append(_rec("c", "running"))
    ledger.append(_rec("other-run", "done"))  # not one of the keys asked about
    assert ledger.counts(["a", "b", "c", "d"]) == {"pending": 2, "done": 1, "failed": 1}
    assert ledger.counts([]) == {"pending": 0, "done": 0, "failed": 0}


def test_a_torn_last_line_is_ignored_and_dropped_and_the_next_append_is_a_line_of_its_own(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(_rec("tile-0-0-t"))
    ledger.append(_rec("tile-0-1-t"))
    whole = ledger.path.read_bytes()
    torn = _rec("tile-0-2-t").to_json()[:25]
    ledger.path.write_bytes(whole + torn.encode())  # a crash in the middle of a write
    assert set(ledger.records()) == {"tile-0-0-t", "tile-0-1-t"}

    assert ledger.drop_torn_tail() is True
    assert ledger.path.read_bytes() == whole
    assert ledger.drop_torn_tail() is False, "a whole file is left as it is"
    assert ledger.path.read_bytes() == whole

    ledger.append(_rec("tile-0-2-t", attempts=2))
    recs = ledger.records()
    assert set(recs) == {"tile-0-0-t", "tile-0-1-t", "tile-0-2-t"}
    assert recs["tile-0-2-t"].attempts == 2
    assert all(json.loads(line) for line in ledger.path.read_text().splitlines())


def test_a_ledger_that_is_only_a_torn_line_is_emptied(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.path.write_text('{"attempts": 1, "co')
    assert ledger.records() == {}
    assert ledger.drop_torn_tail() is True
    assert ledger.path.read_bytes() == b""
    ledger.append(_rec("tile-0-0-t"))
    assert ledger.done_keys() == {"tile-0-0-t"}


def test_an_empty_ledger_file_is_not_changed(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.path.write_bytes(b"")
    assert ledger.drop_torn_tail() is False
    assert ledger.records() == {}


def test_lines_that_are_not_records_are_skipped(tmp_path: Path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(_rec("tile-0-0-t"))
    with open(ledger.path, "a", encoding="utf-8") as f:
        f.write("\n")  # a blank line
        f.write('{"key": "tile-9-9-t"}\n')  # JSON, but not a whole record
        f.write("[1, 2]\n")  # JSON, but not an object
    ledger.append(_rec("tile-0-1-t"))
    assert set(ledger.records()) == {"tile-0-0-t", "tile-0-1-t"}


def test_concurrent_appends_from_threads_stay_whole_lines(tmp_path: Path):
    threads, per_thread = 6, 25
    ledger = Ledger(tmp_path / "ledger.jsonl")
    # long records (a traceback-sized error) make interleaved writes likely if a line were split
    error = "Traceback: " + "x" * 3000
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        """Append this thread's records as fast as possible."""
        start.wait()
        for i in range(per_thread):
            ledger.append(_rec(f"tile-{t}-{i}-t", "failed", error=error, attempts=i + 1))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    lines = ledger.path.read_text().splitlines()
    assert len(lines) == threads * per_thread
    parsed = [TileRecord.from_dict(json.loads(line)) for line in lines]  # every line is one whole record
    assert {r.key for r in parsed} == {f"tile-{t}-{i}-t" for t in range(threads) for i in range(per_thread)}
    assert all(r.error == error for r in parsed)
    assert len(ledger.records()) == threads * per_thread
