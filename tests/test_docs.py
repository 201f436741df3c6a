"""Every Python block of README.md and docs/*.md runs (in a fresh interpreter, from a temporary folder), so the
examples cannot rot; and the README stays a quickstart that indexes every docs page."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[tuple[str, int, str]]:
    """(page, index, code) of every ```python block."""
    out = []
    for page in PAGES:
        for index, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8"))):
            out.append((str(page.relative_to(ROOT)), index, match.group(1)))
    return out


def test_the_readme_is_a_quickstart_that_indexes_every_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"README does not link docs/{page.name}"
    assert python_blocks(), "no Python example found"


@pytest.mark.slow
@pytest.mark.parametrize("page, index, code", python_blocks(), ids=lambda v: str(v)[:40] if isinstance(v, str) else v)
def test_python_block_runs(page, index, code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, f"{page}, Python block {index + 1}:\n{done.stderr[-3000:]}"
