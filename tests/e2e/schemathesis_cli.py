"""Schemathesis' command line with ``ast.parse`` serialised across threads.

CPython 3.11's ``ast`` module keeps one recursion counter for the whole interpreter
(gh-106905, fixed in later releases), so two threads parsing at once can fail with
``SystemError: AST constructor recursion depth mismatch``. Hypothesis parses lambdas'
source to describe strategies, and schemathesis runs it in two worker threads
(test_gateway_openapi.py): the tool then crashes on a case, which is not a finding. One
lock around ``ast.parse`` removes the race and costs nothing measurable.

Run as ``python tests/e2e/schemathesis_cli.py <st arguments>``.
"""

from __future__ import annotations

import ast
import sys
import threading

_LOCK = threading.Lock()
_PARSE = ast.parse


def _parse(*args, **kwargs):
    with _LOCK:
        return _PARSE(*args, **kwargs)


def main() -> int:
    ast.parse = _parse
    from schemathesis.cli import schemathesis

    return schemathesis()


if __name__ == "__main__":
    sys.exit(main())
