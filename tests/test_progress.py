"""Progress bars: drawn on a terminal, silent when output is redirected."""

from __future__ import annotations

import io

from tledge.progress import progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_draws_on_a_terminal_only():
    quiet, terminal = io.StringIO(), FakeTerminal()
    for stream in (quiet, terminal):
        bar = progress_bar(40, "caching train features", stream=stream)
        bar.update(25)
        bar.refresh()
        bar.close()
    assert quiet.getvalue() == ""
    assert "caching train features" in terminal.getvalue() and "25/40" in terminal.getvalue()


def test_folder_predict_shows_no_bar_when_redirected(capsys, tmp_path):
    from tledge.runtime.outputs import ProgressSink

    sink = ProgressSink(3)  # stderr under pytest is not a terminal
    for _ in range(3):
        sink.write({}, None, {})
    sink.close()
    assert capsys.readouterr().err == ""
