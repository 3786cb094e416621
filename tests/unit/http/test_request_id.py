from __future__ import annotations

import re
import time

from gophergate.http.io import request_id


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"headers": list(headers)}


def test_generated_request_ids_are_time_ordered_so_log_inserts_append_to_the_request_id_index() -> None:
    ids = []
    for _ in range(5):
        ids.append(request_id(_scope()))
        time.sleep(0.002)
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    assert ids == sorted(ids)  # later requests sort later: the index grows at its right edge
    now_ms = int(time.time() * 1000)
    assert 0 <= now_ms - int(ids[-1][4:16], 16) < 5_000  # the prefix is the Unix time in ms


def test_generated_request_ids_within_one_millisecond_are_unique() -> None:
    ids = {request_id(_scope()) for _ in range(20_000)}
    assert len(ids) == 20_000


def test_a_sane_caller_request_id_is_kept_and_an_unsafe_one_replaced() -> None:
    assert request_id(_scope((b"x-request-id", b"trace-abc.123"))) == "trace-abc.123"
    replaced = request_id(_scope((b"x-request-id", b"bad id\r\nx: y")))
    assert replaced.startswith("req_") and len(replaced) == 28
