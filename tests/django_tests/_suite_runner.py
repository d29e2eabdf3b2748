"""Run one suite of ``_suites`` with Django's test runner and write per-class results as JSON.

Usage (from the repository root, as ``_django_src.run_suite`` does)::

    DJANGO_SETTINGS_MODULE=tests.django_tests.settings CACHEKIT_DJANGO_EXTRA_APPS=cache,... \
    python -m tests.django_tests._suite_runner cache|sessions OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import unittest
from collections import defaultdict
from typing import Any


def _format(err: Any) -> str:
    return "".join(traceback.format_exception(*err))


class RecordingResult(unittest.TextTestResult):
    """A text result that also keeps every test's outcome, for the JSON report."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, tuple[str, str, str]] = {}  # id -> (class, status, detail)

    def _record(self, test: Any, status: str, detail: str = "") -> None:
        test_id = test.id()
        if status == "passed" and test_id in self.outcomes:
            return  # a failed subtest already decided this test
        if isinstance(test, unittest.TestCase):
            owner = type(test).__name__
        else:  # setUpClass/tearDownClass errors: "setUpClass (module.Class)"
            owner = str(test).rsplit(".", 1)[-1].rstrip(")")
        self.outcomes[test_id] = (owner, status, detail)

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "failed", _format(err))

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "failed", _format(err))

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._record(test, "failed", f"{subtest}: {_format(err)}")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "failed", "unexpected success")


def _exclude(cls: type, name: str, reason: str) -> None:
    def excluded(self: unittest.TestCase) -> None:
        raise unittest.SkipTest(f"excluded: {reason}")

    setattr(cls, name, excluded)


def main(suite_name: str, out_path: str) -> int:
    sys.path.insert(0, os.environ["CACHEKIT_DJANGO_TESTS_DIR"])
    import django

    django.setup()
    from django.test.runner import DiscoverRunner

    from tests.django_tests import _suites

    classes = _suites.SUITES[suite_name]
    for target, reason in _suites.EXCLUDED.items():
        class_name, name = target.split(".")
        for cls in classes:
            if cls.__name__ == class_name:
                _exclude(cls, name, reason)

    holder: dict[str, RecordingResult] = {}

    class Runner(DiscoverRunner):
        def build_suite(self, *args: Any, **kwargs: Any) -> unittest.TestSuite:
            loader = unittest.TestLoader()
            return unittest.TestSuite(loader.loadTestsFromTestCase(cls) for cls in classes)

        def get_resultclass(self) -> type[RecordingResult]:
            return RecordingResult

        def suite_result(self, suite: Any, result: Any, **kwargs: Any) -> int:
            holder["result"] = result
            return int(super().suite_result(suite, result, **kwargs))

    Runner(verbosity=1, interactive=False).run_tests([])
    report: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"passed": 0, "failed": {}, "skipped": {}, "excluded": {}}
    )
    for test_id, (owner, status, detail) in holder["result"].outcomes.items():
        entry = report[owner]
        if status == "passed":
            entry["passed"] += 1
        elif status == "skipped" and detail.startswith("excluded: "):
            entry["excluded"][test_id] = detail.removeprefix("excluded: ")
        else:
            entry[status][test_id] = detail
    with open(out_path, "w") as out:
        json.dump({"django": django.__version__, "classes": report}, out, indent=1)
    for owner, entry in sorted(report.items()):
        print(
            f"{owner}: {entry['passed']} passed, {len(entry['failed'])} failed, "
            f"{len(entry['skipped'])} skipped, {len(entry['excluded'])} excluded",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
