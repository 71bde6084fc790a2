"""The test suite's size and wall time on this machine: runs ``python -m pytest -q`` (any
further arguments go to pytest) and records how many tests passed, failed and were skipped
(with the reasons), the wall time and the slowest tests.

    python benchmarks/test_suite.py --json docs/test_suite.json

Run it on an otherwise idle machine (the suite's time is a timing like any other), from a
checkout whose docs/ is committed: the suite checks that the docs match their JSON, and this
file is written only after it. Then ``python scripts/make_docs.py``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from _record import ROOT, machine, write


def parse_junit(path: Path) -> dict:
    """Counts, skip reasons and every test's seconds (setup + call + teardown) from pytest's
    JUnit XML."""
    tests, skips = [], []
    outcome = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        tests.append({"test": name, "seconds": float(case.get("time", 0))})
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            outcome["failed"] += 1
        elif "error" in kinds:
            outcome["errors"] += 1
        elif "skipped" in kinds:
            outcome["skipped"] += 1
            skips.append({"test": name, "reason": case.find("skipped").get("message", "")})
        else:
            outcome["passed"] += 1
    tests.sort(key=lambda t: -t["seconds"])
    return {**outcome, "skips": skips, "tests": tests}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the counts, times and the machine here")
    p.add_argument("--slowest", type=int, default=10, help="how many of the slowest tests to keep")
    a, pytest_args = p.parse_known_args()
    mach = machine()
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={xml}", *pytest_args],
                            cwd=ROOT).returncode
        wall = time.perf_counter() - t0
        result = parse_junit(xml)
    result["slowest"] = result.pop("tests")[:a.slowest]
    print(f"{result['passed']} passed, {result['failed']} failed, {result['errors']} errors, "
          f"{result['skipped']} skipped in {wall:.0f} s")
    write(a.json, {"pytest_args": pytest_args, "exit_code": rc, "wall_s": wall, **result}, mach)
    sys.exit(rc)


if __name__ == "__main__":
    main()
