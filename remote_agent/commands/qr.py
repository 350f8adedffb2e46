"""A URL as a QR code drawn in the terminal, for a phone's or a tablet's camera.

Two modules share one character cell (the half blocks ▀ ▄ █), so a typical ngrok URL
(QR version 3 or 4, 29 or 33 modules, plus a 2-module quiet zone) takes 33 to 37 columns
and 17 to 19 lines: it fits an 80x24 terminal. On a terminal the colours are set
explicitly (light modules white, dark ones black), so it scans on dark and light themes
alike; elsewhere (a pipe, a file) light modules are drawn as blocks, which suits the
usual dark terminal and which phone cameras also read when inverted.
"""

from __future__ import annotations

import os
from typing import TextIO

BORDER = 2
# (top module light, bottom module light) -> the character that shows it in the foreground colour.
HALF_BLOCKS = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
LIGHT_ON_DARK = "\033[97;40m"
RESET = "\033[0m"


def lines(text: str) -> list[str]:
    """The QR code of `text` as terminal lines, light modules in the foreground colour."""
    import segno  # only here: `url` and `status` stay fast without --qr

    code = segno.make(text, micro=False)
    rows = [[not dark for dark in row] for row in code.matrix_iter(scale=1, border=BORDER)]
    if len(rows) % 2:
        rows.append([True] * len(rows[0]))
    pairs = zip(rows[::2], rows[1::2], strict=True)
    return ["".join(HALF_BLOCKS[cell] for cell in zip(top, bottom, strict=True)) for top, bottom in pairs]


def wants_colour(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb" and "NO_COLOR" not in os.environ


def draw(text: str, stream: TextIO) -> None:
    colour = wants_colour(stream)
    for line in lines(text):
        stream.write(f"{LIGHT_ON_DARK}{line}{RESET}\n" if colour else line + "\n")
    stream.flush()
