from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import logs
from gateway.core.redaction import REDACTED
from gateway.logs import FIELDS, JsonFormatter, RedactingFilter

JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.eyJpYXQiOjE2NzEwMDk1NDMsIm9wZW5JZCI6IjIyIn0."
    "pa54O9Da_W8TF4hEF7O3-UFVGWHNfMHyCJYcJKBMdcZoeAuqpktnMLPygnbsWbe"
)
SIGN = "964bd40923c2f8911560c18cb06f580d3d26436378c11edff3f0691e4db00242"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(JWT, id="a JWT"),
        pytest.param("x" * 40 + JWT, id="a JWT across the cut"),
        pytest.param("x" * 60 + JWT + "y" * 200, id="a JWT starting just before the cut"),
        pytest.param(f"sign={SIGN}" + "z" * 100, id="a sign across the cut"),
        pytest.param(
            "y" * 50 + "my-app-secret-value-0123456789", id="a known secret across the cut"
        ),
        pytest.param("Bearer " + "t" * 300, id="a long bearer token"),
    ],
)
def test_a_value_is_redacted_whole_before_it_is_clipped(text: str) -> None:
    clipped = logs.clipped(text, 64, ["my-app-secret-value-0123456789"])
    assert len(clipped) <= 64 + len(REDACTED) + 1
    assert REDACTED in clipped, clipped
    for credential in (JWT, SIGN, "my-app-secret-value-0123456789", "t" * 300):
        for start in range(len(credential) - 7):
            assert credential[start : start + 8] not in clipped, clipped


def test_a_short_value_is_not_clipped() -> None:
    assert logs.clipped("demo", 64) == "demo"
    assert logs.clipped("d" * 65, 64) == "d" * 64 + "…"


def test_filter_redacts_args_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "sent %s", (f"sign={SIGN}",), None)
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert SIGN not in record.getMessage()
    assert record.exc_text is not None
    assert JWT not in record.exc_text
    assert "ValueError" in record.exc_text


def test_traceback_lines_cannot_pass_for_records() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO forged line")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    assert record.exc_text is not None
    assert all(line.startswith("    ") for line in record.exc_text.splitlines())


@given(st.text())
def test_a_record_is_always_one_line(text: str) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (text,), None)
    assert RedactingFilter().filter(record)
    assert len(record.getMessage().splitlines()) <= 1


def json_line(message: str, fields: dict[str, object] | None = None) -> dict[str, object]:
    record = logging.LogRecord("neu_gateway.access", logging.INFO, "x", 1, message, None, None)
    if fields is not None:
        setattr(record, FIELDS, fields)
    RedactingFilter(["my-app-secret"]).filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_json_line_is_redacted_like_a_text_one() -> None:
    line = json_line(f"token {JWT} and my-app-secret\nforged line")
    assert line["level"] == "INFO"
    assert line["logger"] == "neu_gateway.access"
    message = str(line["message"])
    assert JWT not in message
    assert "my-app-secret" not in message
    assert "\\n" in message


def test_a_json_access_line_has_its_fields_at_the_top_and_redacted() -> None:
    line = json_line("access", {"status": 200, "path": f"/neuopenapi/x/{JWT}", "caller": "orders"})
    assert line["status"] == 200
    assert line["caller"] == "orders"
    assert JWT not in str(line["path"])
    assert "message" not in line


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_the_access_line_time_is_isoformat_in_milliseconds(now: float) -> None:
    expected = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    assert logs._utc_stamp(now) == expected


def test_a_cached_clean_value_is_cleaned_again_once_a_secret_is_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "REDACTION", RedactingFilter(["first-secret"]))
    assert logs._cleaned("/neuopenapi/a/first-secret") == f"/neuopenapi/a/{REDACTED}"
    assert logs._cleaned("/neuopenapi/b/later-secret") == "/neuopenapi/b/later-secret"
    logs.REDACTION.add_secrets(["later-secret"])
    assert logs._cleaned("/neuopenapi/b/later-secret") == f"/neuopenapi/b/{REDACTED}"
    assert logs._cleaned("/neuopenapi/\n") == "/neuopenapi/\\n"


def test_the_clean_value_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "REDACTION", RedactingFilter())
    for index in range(5000):
        logs._cleaned(f"/neuopenapi/p{index}")
    logs._cleaned("/neuopenapi/" + "x" * 100_000)
    assert len(logs._cleaned_cache) <= logs._CLEANED_CACHE_SIZE
    assert all(len(key) <= logs._CLEANED_MAX_LENGTH for key in logs._cleaned_cache)


@given(st.lists(st.text(max_size=300).map(lambda text: text.replace("\n", "") + "\n")))
def test_pending_lines_leave_whole_and_within_a_pipes_atomic_write(lines: list[str]) -> None:
    chunks = list(logs._whole_lines_within(lines, 512))
    assert "".join(chunks) == "".join(lines)
    for chunk in chunks:
        assert chunk == "" or chunk.endswith("\n")
        size = len(chunk.encode("utf-8", "replace"))
        assert size <= 512 or chunk.count("\n") == 1, "only a line longer than the limit alone"


_finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    st.builds(
        logs.AccessLine,
        request_id=st.text(),
        caller=st.text(),
        app=st.text(),
        method=st.text(),
        route=st.text(),
        status=st.integers(),
        path=st.text(),
        upstream_status=st.text(),
        platform_status=st.text(),
        duration_ms=_finite,
        upstream_ms=_finite,
        bytes_in=st.integers(min_value=0),
        bytes_out=st.integers(min_value=0),
        trace_id=st.text(),
        remote=st.text(),
        user_agent=st.text(),
        worker=st.none() | st.integers(min_value=0, max_value=64),
    )
)
def test_a_json_access_line_is_json_dumps_of_its_head_and_fields(line: logs.AccessLine) -> None:
    written = logs._access_json(line, line.path, line.user_agent)
    stamp = json.loads(written)["time"]
    head = {"time": stamp, "level": "INFO", "logger": "neu_gateway.access"}
    assert written == json.dumps(head | line.fields(), ensure_ascii=False) + "\n"


def _line(**fields: object) -> logs.AccessLine:
    given: dict[str, object] = {
        "request_id": "r-1",
        "caller": "orders",
        "app": "demo",
        "method": "GET",
        "route": "other",
        "status": 200,
        "path": "/neuopenapi/x",
        "upstream_status": "200",
        "platform_status": "200",
        "duration_ms": 1.5,
        "upstream_ms": 1.0,
        "bytes_in": 0,
        "bytes_out": 2,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "remote": "10.0.0.7",
        "user_agent": "curl/8.5.0",
    }
    return logs.AccessLine(**(given | fields))  # type: ignore[arg-type]


def _written(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    form: str,
    line: logs.AccessLine,
) -> str:
    monkeypatch.setattr(logs, "_direct_format", form)
    monkeypatch.setattr(logs, "REDACTION", RedactingFilter(["my-app-secret"]))
    access = logging.getLogger("neu_gateway.access")
    level = access.level
    access.setLevel(logging.INFO)
    try:
        logs.access(line)
        logs.write_pending()
    finally:
        access.setLevel(level)
    return capsys.readouterr().err


@pytest.mark.parametrize("form", ["json", "text"])
def test_an_access_line_names_the_trace_the_peer_and_the_user_agent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    written = _written(monkeypatch, capsys, form, _line(user_agent="orders/2 (linux; x64)"))
    if form == "json":
        fields = json.loads(written)
        assert fields["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert fields["remote"] == "10.0.0.7"
        assert fields["user_agent"] == "orders/2 (linux; x64)"
    else:
        assert written.endswith(
            "trace_id=0af7651916cd43dd8448eb211c80319c remote=10.0.0.7 "
            'user_agent="orders/2 (linux; x64)"\n'
        )


@pytest.mark.parametrize("form", ["json", "text"])
def test_a_user_agent_is_redacted_escaped_and_cut_short(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    agent = f"bot my-app-secret {JWT}\nforged " + "x" * 1000
    written = _written(monkeypatch, capsys, form, _line(user_agent=agent))
    assert written.count("\n") == 1
    assert "my-app-secret" not in written
    assert JWT[:20] not in written
    assert "x" * (logs.USER_AGENT_LENGTH + 1) not in written
    assert "…" in written


def test_a_text_access_line_quotes_what_would_not_split() -> None:
    fields = {"path": "/a", "user_agent": "", "caller": 'say "hi"', "status": 200}
    assert logs._as_text(fields) == 'path=/a user_agent="" caller="say \\"hi\\"" status=200'
