"""Line numbers in a rules file's text, for error messages that say FILE:LINE."""

from __future__ import annotations

import re


class Locator:
    """Line numbers of ``[[rule]]`` headers and keys, for error messages.

    tomllib reports lines only for syntax errors; for semantic errors a light scan of the
    text finds the Nth ``[[rule]]`` header and a key line within its block.
    """

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rule_lines: list[int] = []
        self.signer_lines: list[int] = []
        self.defaults_line: int | None = None
        self.headers: list[int] = []
        for number, line in enumerate(self.lines, start=1):
            found = self._HEADER.match(line)
            if not found:
                continue
            self.headers.append(number)
            name = found.group(1).strip().strip("\"'")
            if line.lstrip().startswith("[[") and name == "rule":
                self.rule_lines.append(number)
            elif line.lstrip().startswith("[[") and name == "signer":
                self.signer_lines.append(number)
            elif name == "defaults":
                self.defaults_line = number

    def rule_line(self, index: int) -> int | None:
        return self.rule_lines[index] if index < len(self.rule_lines) else None

    def signer_line(self, index: int) -> int | None:
        return self.signer_lines[index] if index < len(self.signer_lines) else None

    def key_line(self, start: int | None, key: str) -> int | None:
        if start is None:
            return None
        later = [h for h in self.headers if h > start]
        end = later[0] if later else len(self.lines) + 1
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for number in range(start + 1, end):
            if pattern.match(self.lines[number - 1]):
                return number
        return start
