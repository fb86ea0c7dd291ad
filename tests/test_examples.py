"""The examples run end to end (each ≤ 2 minutes on a CPU)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "experiments" / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), "an example prints its result"


def test_every_example_is_known():
    assert {p.stem for p in EXAMPLES} == {
        "adapt_context_policy",
        "adapt_sb3_policy",
        "finetune_in_sb3",
        "randomize_any_env",
        "user_robot_family",
    }
