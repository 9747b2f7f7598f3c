"""The README's table of refused configs, generated from tests/test_config_errors.py.

    python scripts/refusal_table.py           # print the table
    python scripts/refusal_table.py --write   # replace it in README.md

tests/test_config_errors.py fails when README.md's table differs from this output, so the
table always lists exactly the cases the tests prove are refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- refusals:start -->", "<!-- refusals:end -->"


def escape(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe would end a markdown table cell


def flat(change: dict, prefix: str = "") -> str:
    """{'training': {'lr': nan}} -> 'training.lr: NaN'."""
    parts = []
    for key, value in change.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            parts.append(flat(value, name))
        else:
            text = json.dumps(value) if not isinstance(value, float) else repr(value)
            parts.append(f"`{name}: {escape(text)}`")
    return ", ".join(parts)


def table() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_config_errors import BAD, SNAKEMAKE_CASES

    rows = [
        "| case | the bad setting | the message names | also stops `snakemake` |",
        "|---|---|---|---|",
    ]
    for case in sorted(BAD):
        change, needles = BAD[case]
        named = ", ".join(f"`{escape(n)}`" for n in needles)
        also = "yes" if case in SNAKEMAKE_CASES else ""
        rows.append(f"| {case.replace('_', ' ')} | {flat(change)} | {named} | {also} |")
    return "\n".join(rows)


def block() -> str:
    return f"{START}\n{table()}\n{END}"


def main() -> None:
    if "--write" in sys.argv:
        readme = ROOT / "README.md"
        text = readme.read_text()
        head, rest = text.split(START, 1)
        readme.write_text(head + block() + rest.split(END, 1)[1])
    else:
        print(table())


if __name__ == "__main__":
    main()
