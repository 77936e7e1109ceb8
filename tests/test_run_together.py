"""The ``run_together`` fixture (conftest.py): the release waits for every process's ready file,
and a process that never gets there fails the test with its name and its stderr."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

# Sleeps argv[3] seconds before the meeting point (argv[4] == "fail": exits there instead),
# then prints when it was ready and when it was released.
SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    go, ready = Path(sys.argv[1]), Path(sys.argv[2])
    time.sleep(float(sys.argv[3]))
    if sys.argv[4:] == ["fail"]:
        sys.exit("no meeting for me")
    ready.touch()
    at_ready = time.time()
    while not go.exists():
        time.sleep(0.01)
    print(at_ready, time.time())
    """
)


def test_the_release_waits_for_the_slowest_process(run_together: Callable[..., list[str]]) -> None:
    # Longer than the fixed 4 s the fixture used to wait before releasing everyone.
    lines = run_together(SCRIPT, [["0"], ["5"]])
    ready, released = zip(*(map(float, line.split()) for line in lines), strict=True)
    assert max(ready) <= min(released)


def test_a_process_that_ends_before_the_meeting_point_is_named(
    run_together: Callable[..., list[str]],
) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"process 1 ended \(exit 1\) before") as e:
        run_together(SCRIPT, [["0"], ["0", "fail"]])
    assert "go.ready.1" in str(e.value) and "no meeting for me" in str(e.value)


def test_a_process_late_past_the_timeout_is_named_with_its_stderr(
    run_together: Callable[..., list[str]],
) -> None:
    late = "import sys, time; print('still importing', file=sys.stderr, flush=True); time.sleep(60)"
    with pytest.raises(pytest.fail.Exception) as e:
        run_together(late, [[]], ready_timeout=2)
    message = str(e.value)
    assert "process 0 did not write its ready file go.ready.0 within 2 s" in message
    assert "still importing" in message
