"""The QR code that `serve --qr` and `url --qr` draw: it decodes to the URL and fits 80x24."""

from __future__ import annotations

import io

import pytest
from qr_decode import decode, qr_blocks

from remote_agent.commands import qr

URLS = [
    "http://ab12cd34.ngrok.localhost:41234",  # what the test agent gives
    "https://3f2a-203-0-113-7.ngrok-free.app",  # a free-plan URL
    "https://my-long-static-domain-for-jupyter.ngrok-free.app",  # a long static domain
]


@pytest.mark.parametrize("url", URLS)
def test_the_drawing_decodes_to_the_url_and_fits_a_small_terminal(url: str) -> None:
    out = io.StringIO()
    qr.draw(url, out)
    lines = qr_blocks(out.getvalue())
    assert lines == out.getvalue().splitlines()
    assert decode(lines) == [url]
    assert len(lines) <= 22, "leaves room for the prompt in 24 lines"
    assert max(len(line) for line in lines) <= 80


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_colours_are_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Terminal()
    qr.draw(URLS[0], out)
    first = out.getvalue().splitlines()[0]
    assert first.startswith(qr.LIGHT_ON_DARK)
    assert first.endswith(qr.RESET)
    assert decode(qr_blocks(out.getvalue())) == [URLS[0]]
