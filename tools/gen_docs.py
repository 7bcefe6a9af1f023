"""Regenerate the parts of docs/ that are generated from the code: `make docs`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eggpool.core.lifecycle import state_diagram  # noqa: E402

BEGIN, END = "<!-- generated: state diagram -->", "<!-- end generated -->"


def render(text: str) -> str:
    block = f"{BEGIN}\n```mermaid\n{state_diagram()}```\n{END}"
    return re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)


def main() -> None:
    path = ROOT / "docs" / "lifecycle.md"
    path.write_text(render(path.read_text("utf-8")), "utf-8")


if __name__ == "__main__":
    main()
