"""Progress bars: drawn on a terminal when tledge's INFO lines are shown, silent when output is redirected
or under -q."""

from __future__ import annotations

import io
import logging

from tledge.logs import LEVELS, cli_logging
from tledge.progress import progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _draw(stream) -> str:
    bar = progress_bar(40, "caching train features", stream=stream)
    bar.update(25)
    bar.refresh()
    bar.close()
    return stream.getvalue()


def test_bar_draws_on_a_terminal_only():
    with cli_logging(logging.INFO):  # as `tledge train` runs
        assert _draw(io.StringIO()) == ""
        terminal = _draw(FakeTerminal())
    assert "caching train features" in terminal and "25/40" in terminal


def test_no_bar_under_quiet_or_without_logging_config():
    with cli_logging(LEVELS["quiet"]):  # tledge -q
        assert _draw(FakeTerminal()) == ""
    assert _draw(FakeTerminal()) == ""  # a script that configured no logging: quiet like the log lines


def test_folder_predict_shows_no_bar_when_redirected(capsys, tmp_path):
    from tledge.runtime.outputs import ProgressSink

    sink = ProgressSink(3)  # stderr under pytest is not a terminal
    for _ in range(3):
        sink.write({}, None, {})
    sink.close()
    assert capsys.readouterr().err == ""
