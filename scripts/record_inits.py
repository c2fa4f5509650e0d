"""Write ``dagrun/record_inits.py``: the ``__init__`` makers of dagrun's own records, as
source that Python compiles once into ``__pycache__`` like any module.

``dagrun.record`` compiles each record's ``__init__`` from source on the class's first
instantiation (~20 us a field: 4 ms for the records a sweep makes, in every process). A
source found in ``record_inits.MAKERS`` is taken from there instead. The lookup is by the
whole source text, so a stale file is only slower, never wrong: a record whose declaration
changed finds no maker and is compiled as before.

    python scripts/record_inits.py          # write the file (``make records``)
    python scripts/record_inits.py --check  # exit 1 when the file is not what it would write
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagrun  # noqa: E402
from dagrun.record import init_text  # noqa: E402

TARGET = ROOT / "dagrun" / "record_inits.py"
SKIP = {"dagrun.__main__", "dagrun.record_inits"}  # runs the command line; this output
HEAD = '''"""The ``__init__`` makers of dagrun's records, compiled with the package.

Written by ``scripts/record_inits.py`` (``make records``); do not edit. ``dagrun.record``
takes a maker from ``MAKERS`` by the exact source it would compile, so an entry that no
longer matches a record is only unused (``tests/test_record.py`` says when to rewrite).
"""

# ruff: noqa
# mypy: ignore-errors

from collections.abc import Callable
from typing import Any
'''


def records() -> list[type]:
    """Every record class at the top of a dagrun module, by module and name."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(dagrun.__path__, "dagrun."):
        if info.name in SKIP:
            continue
        module = importlib.import_module(info.name)  # an import error stops the writing
        for value in vars(module).values():
            if isinstance(value, type) and "__record_fields__" in vars(value) \
                    and value.__module__ == info.name and "<" not in value.__qualname__:
                found[f"{info.name}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


def text() -> str:
    """The module's text: one maker per distinct source, then ``MAKERS``."""
    sources = list(dict.fromkeys(init_text(cls)[0] for cls in records()))
    parts = [HEAD]
    for number, source in enumerate(sources):
        assert source.startswith("def __make__(")
        parts.append("\n" + source.replace("def __make__(", f"def _make_{number}(", 1))
    parts.append("\n\nMAKERS: dict[str, Callable[..., Any]] = {\n")
    parts += [f"    {source!r}: _make_{number},\n" for number, source in enumerate(sources)]
    parts.append("}\n")
    return "".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when dagrun/record_inits.py differs from what this writes")
    args = parser.parse_args()
    wanted = text()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != wanted:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `make records`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(wanted, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({wanted.count('def _make_')} makers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
