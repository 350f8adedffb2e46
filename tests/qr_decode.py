"""Reading back a QR code drawn in a terminal, with an independent decoder (zxing-cpp).

The half-block characters are turned back into modules, the modules into a grayscale
image, and zxing-cpp decodes that image as a phone's camera app would.
"""

from __future__ import annotations

import re

import zxingcpp

# Each character shows two modules, top and bottom; True is light (drawn in the foreground).
CELLS = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SCALE = 4
MARGIN = 16


def qr_blocks(text: str) -> list[str]:
    """The lines of the (first) QR code in a command's output."""
    found: list[str] = []
    for raw in text.splitlines():
        line = ANSI.sub("", raw)
        if line and set(line) <= set(CELLS) and "█" in line:
            found.append(line)
        elif found:
            break
    return found


def decode(lines: list[str]) -> list[str]:
    rows: list[list[bool]] = []
    for line in lines:
        cells = [CELLS[c] for c in line]
        rows.append([top for top, _ in cells])
        rows.append([bottom for _, bottom in cells])
    width = len(rows[0]) * SCALE + 2 * MARGIN
    height = len(rows) * SCALE + 2 * MARGIN
    image = bytearray([255]) * (width * height)
    for y, row in enumerate(rows):
        for x, light in enumerate(row):
            if not light:
                for dy in range(SCALE):
                    start = (MARGIN + y * SCALE + dy) * width + MARGIN + x * SCALE
                    image[start : start + SCALE] = bytes(SCALE)
    found = zxingcpp.read_barcodes(memoryview(bytes(image)).cast("B", (height, width)))
    return [str(code.text) for code in found]
