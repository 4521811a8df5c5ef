"""Regenerate the README sections that are derived from code (run after changing texts or the machine).

    python docs/generate.py          # rewrite README.md in place
    python docs/generate.py --check  # exit 1 if README.md is stale
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from conversations.catalog import markdown_table
from conversations.machine import mermaid

README = Path(__file__).resolve().parent.parent / "README.md"


def config_table() -> str:
    from outreach.config import SETTINGS

    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, (default, meaning) in SETTINGS.items():
        shown = "*(none: secret)*" if default is None and "secret" in meaning else \
            "*(none)*" if default is None else f"`{default}`"
        lines.append(f"| `{name}` | {shown} | {meaning} |")
    return "\n".join(lines)


def sections() -> dict[str, str]:
    return {"state-diagram": f"```mermaid\n{mermaid()}\n```", "texts": markdown_table(), "config": config_table()}


def render(text: str) -> str:
    for name, body in sections().items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(\n<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no markers for section {name!r}")
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    return text


def main() -> None:
    current = README.read_text(encoding="utf-8")
    updated = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if updated == current else 1)
    README.write_text(updated, encoding="utf-8")


if __name__ == "__main__":
    main()
