"""Print the project's requirements from pyproject.toml, one per line, for ``pip install -r``.

    python scripts/dependencies.py [EXTRA ...]      # runtime dependencies plus the named extras

Used with the lock file to install the dependencies without the project itself
(``pip install -c constraints.txt -r <(python scripts/dependencies.py test)``): scripts/serve.sh,
scripts/test.sh and the images. Standard library only (it runs before anything is installed).
"""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """Runtime dependencies, then those of each extra (each requirement once, in order).

    Raises:
        KeyError: an extra the project does not define.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise KeyError(f"unknown extra(s) {', '.join(unknown)}; pyproject.toml defines {', '.join(sorted(optional))}")
    lines = list(project["dependencies"])
    for extra in extras:
        lines += optional[extra]
    return list(dict.fromkeys(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="optional-dependency groups to add (test, cvat)")
    args = parser.parse_args(argv)
    try:
        print("\n".join(requirements(args.extras)))
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
