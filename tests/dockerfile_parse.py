"""The Dockerfile as data, for tests (no Docker engine here): stages of (INSTRUCTION, arguments)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stage:
    base: str  # the FROM image
    name: str | None  # FROM ... AS name
    instructions: list[tuple[str, str]]

    def arguments(self, keyword: str) -> list[str]:
        return [rest for k, rest in self.instructions if k == keyword]


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += " " + line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        keyword, _, rest = pending.strip().partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "dangling continuation"
    return found


def stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    result: list[Stage] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name, []))
        else:
            assert result, f"{keyword} before FROM"
            result[-1].instructions.append((keyword, rest))
    return result
