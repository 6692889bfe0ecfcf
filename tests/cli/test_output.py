"""What `serve` prints, turned into log records once its logs are JSON."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

import pytest

from gateway import logs
from gateway.cli.output import in_log_format


@pytest.fixture
def as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_direct_format", "json")


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(record.levelname, record.getMessage()) for record in caplog.records]


@pytest.mark.usefixtures("as_json")
def test_a_printed_problem_and_its_indented_details_are_one_error_record(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.INFO, "neu_gateway"), in_log_format():
        print("neu-gateway: invalid config gateway.yaml:", file=sys.stderr)
        print("  apps.demo.appid: required", file=sys.stderr)
        print("  timeout: unknown option", file=sys.stderr)
        print("neu-gateway: no config file at x", file=sys.stderr)
        print("  name yours with -c FILE", file=sys.stderr)
        print("a note", end="")
    assert messages(caplog) == [
        (
            "ERROR",
            "invalid config gateway.yaml: apps.demo.appid: required; timeout: unknown option",
        ),
        ("ERROR", "no config file at x; name yours with -c FILE"),
        ("INFO", "a note"),
    ]
    assert capsys.readouterr() == ("", "")


@pytest.mark.usefixtures("as_json")
async def test_while_serving_a_printed_line_is_logged_at_the_end_of_the_loops_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "neu_gateway"), in_log_format():
        print("neu-gateway: something went wrong", file=sys.stderr)
        print("  a detail", file=sys.stderr)
        await asyncio.sleep(0)  # wait-ok: the end of one turn of the loop is what is tested
        assert messages(caplog) == [("ERROR", "something went wrong; a detail")]


@pytest.mark.usefixtures("as_json")
def test_json_lines_pass_as_they_are(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    access = '{"time": "2026-01-01T00:00:00.000+00:00", "level": "INFO"}\n' * 3
    with caplog.at_level(logging.INFO, "neu_gateway"), in_log_format():
        sys.stderr.write(access)
        print('{"already": "json"}', file=sys.stderr)
    assert capsys.readouterr().err == access + '{"already": "json"}\n'
    assert caplog.records == []


def test_in_text_everything_passes_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(logs, "_direct_format", "text")
    with caplog.at_level(logging.INFO, "neu_gateway"), in_log_format():
        print("neu-gateway: invalid config gateway.yaml:", file=sys.stderr)
        print("  apps.demo.appid: required", file=sys.stderr)
        print("ok")
    assert capsys.readouterr() == (
        "ok\n",
        "neu-gateway: invalid config gateway.yaml:\n  apps.demo.appid: required\n",
    )
    assert caplog.records == []


@pytest.mark.usefixtures("as_json")
def test_a_record_that_writes_to_stderr_itself_does_not_loop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class ToStderrNow(logging.Handler):
        """As logging's last resort does: the stream of the moment."""

        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(f"written: {record.getMessage()}\n")

    handler = ToStderrNow()
    named = logging.getLogger("neu_gateway")
    named.addHandler(handler)
    try:
        with in_log_format():
            print("neu-gateway: cannot start", file=sys.stderr)
    finally:
        named.removeHandler(handler)
    assert "written: cannot start\n" in capsys.readouterr().err


def test_the_stream_is_a_text_stream() -> None:
    with in_log_format():
        assert isinstance(sys.stderr, io.TextIOBase)
        assert sys.stderr.writable()


@pytest.mark.usefixtures("as_json")
def test_a_printed_line_nested_past_the_json_parsers_depth_is_wrapped_as_text(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = "{" + '"a": [' * 100_000 + "]" * 100_000 + "}"
    with caplog.at_level(logging.INFO, "neu_gateway"), in_log_format():
        print(nested)
    [(level, message)] = messages(caplog)
    assert (level, message[:12]) == ("INFO", nested[:12])
    assert capsys.readouterr() == ("", "")


@pytest.mark.usefixtures("as_json")
def test_text_printed_without_an_end_of_line_is_not_held_without_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "neu_gateway"), in_log_format():
        for _ in range(100):
            print("x" * 1000, end="")
        # Written out already, without waiting for an end of line that may never come.
        assert sum(len(message) for _, message in messages(caplog)) >= 65_000
