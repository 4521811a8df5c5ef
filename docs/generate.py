"""Regenerate the documentation sections that are derived from code (run after changing texts, the machine or
the settings).

    python docs/generate.py          # rewrite the pages in place
    python docs/generate.py --check  # exit 1 if any page is stale

Each section sits in one page between ``<!-- BEGIN name -->`` and ``<!-- END name -->``; ``PAGES`` says which.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's packages, installed or not

from conversations.catalog import markdown_table
from conversations.machine import mermaid

ROOT = Path(__file__).resolve().parent.parent
# page (relative to the repository) -> the generated sections it holds
PAGES: dict[str, tuple[str, ...]] = {
    "docs/coordinators.md": ("state-diagram", "texts"),
    "docs/operations.md": ("config",),
}


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


def render(text: str, names: tuple[str, ...] | None = None, page: str = "README.md") -> str:
    """``text`` with the sections ``names`` (default: all) replaced by what the code says now."""
    bodies = sections()
    for name in names if names is not None else tuple(bodies):
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(\n<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{page} has no markers for section {name!r}")
        text = pattern.sub(lambda m, body=bodies[name]: m.group(1) + body + m.group(2), text)
    return text


def main() -> None:
    check = "--check" in sys.argv
    stale = []
    for page, names in PAGES.items():
        path = ROOT / page
        current = path.read_text(encoding="utf-8")
        updated = render(current, names, page)
        if updated == current:
            continue
        stale.append(page)
        if not check:
            path.write_text(updated, encoding="utf-8")
    if check:
        for page in stale:
            print(f"{page} is stale: run `python docs/generate.py`", file=sys.stderr)
        sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
