"""The metering core must not import Django (STYLE.md convention 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_it_imports_without_django():
    completed = subprocess.run(
        [sys.executable, "-c", "import metering.core, sys; assert 'django' not in sys.modules"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
