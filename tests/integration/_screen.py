"""What a terminal shows after a program wrote to it: a small emulator of the escape codes Rich's
live display and plain output use, for tests that look at the screen, not at the bytes.

It knows printing with automatic wrap at the right margin (the cursor waits there until the
next character, as xterm's does), carriage return, line feed (scrolling at the bottom), cursor
up/down/forward/back, erasing a line or the screen, and ignores colours, cursor visibility and
every other sequence. Lines scrolled off the top are kept, so the whole transcript can be read.
"""

from __future__ import annotations

import codecs
import re

#: A control sequence (CSI), an operating-system command (OSC), or a lone escape and its letter.
_ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([ -/]*[@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


class Screen:
    """``rows`` x ``columns`` cells, fed the bytes a program wrote (``feed``)."""

    def __init__(self, rows: int, columns: int):
        self.rows, self.columns = rows, columns
        self.scrolled: list[str] = []  # lines that left the top of the screen, oldest first
        self._cells = [[" "] * columns for _ in range(rows)]
        self._row = self._column = 0
        self._wrap_next = False  # at the right margin: the next character goes on the next line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span two reads

    def feed(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        at = 0
        for match in _ESCAPE.finditer(text):
            self._print(text[at : match.start()])
            if match.group(2) is not None:
                self._control(match.group(1), match.group(2))
            at = match.end()
        self._print(text[at:])

    @property
    def lines(self) -> list[str]:
        """What the screen shows now, one string a row, trailing blanks dropped."""
        return ["".join(row).rstrip() for row in self._cells]

    @property
    def transcript(self) -> list[str]:
        """Everything written that is still to be read: the scrolled-off lines, then the screen,
        its empty rows at the bottom dropped."""
        lines = [*self.scrolled, *self.lines]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def _print(self, text: str) -> None:
        for char in text:
            if char == "\r":
                self._column, self._wrap_next = 0, False
            elif char == "\n":
                self._line_feed()
            elif char == "\b":
                self._column, self._wrap_next = max(0, self._column - 1), False
            elif char == "\x07" or ord(char) < 32:
                continue
            else:
                if self._wrap_next:
                    self._column, self._wrap_next = 0, False
                    self._line_feed()
                self._cells[self._row][self._column] = char
                if self._column == self.columns - 1:
                    self._wrap_next = True
                else:
                    self._column += 1

    def _line_feed(self) -> None:
        self._wrap_next = False
        if self._row == self.rows - 1:
            self.scrolled.append("".join(self._cells.pop(0)).rstrip())
            self._cells.append([" "] * self.columns)
        else:
            self._row += 1

    def _control(self, params: str, final: str) -> None:
        numbers = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")]
        n = max(1, numbers[0])
        self._wrap_next = False
        if final == "A":
            self._row = max(0, self._row - n)
        elif final == "B":
            self._row = min(self.rows - 1, self._row + n)
        elif final == "C":
            self._column = min(self.columns - 1, self._column + n)
        elif final == "D":
            self._column = max(0, self._column - n)
        elif final == "G":
            self._column = min(self.columns - 1, n - 1)
        elif final == "K":
            self._erase_line(numbers[0])
        elif final == "J" and numbers[0] == 2:
            self._cells = [[" "] * self.columns for _ in range(self.rows)]

    def _erase_line(self, mode: int) -> None:
        row = self._cells[self._row]
        start, end = {0: (self._column, self.columns), 1: (0, self._column + 1)}.get(mode, (0, self.columns))
        row[start:end] = [" "] * (end - start)


def one_line(lines: list[str], *words: str) -> str:
    """The one line of ``lines`` that holds every word; fails unless there is exactly one."""
    found = [line for line in lines if all(word in line for word in words)]
    assert len(found) == 1, f"{len(found)} lines hold {words}:\n" + "\n".join(lines)
    return found[0]


def panel_problems(lines: list[str], width: int) -> list[str]:
    """What is wrong with the Rich panels among ``lines`` on a screen ``width`` wide: a line wider
    than the screen, a panel border or side not full width, a top border left without its bottom
    (a torn panel), or a bottom without its top. None: every panel is whole."""
    problems = [f"wider than {width}: {line}" for line in lines if len(line) > width]
    inside = False
    for line in lines:
        top, bottom, side = line.startswith("╭"), line.startswith("╰"), line.startswith("│")
        if (top or bottom or (inside and side)) and len(line) != width:
            problems.append(f"not {width} wide: {line}")
        if top and inside:
            problems.append(f"a panel torn before: {line}")
        elif bottom and not inside:
            problems.append(f"a bottom border without its top: {line}")
        elif inside and not (top or bottom or side):
            problems.append(f"a panel torn before: {line}")
        inside = top or (inside and not bottom and side)
    if inside:
        problems.append("a panel is cut off at the bottom")
    return problems
