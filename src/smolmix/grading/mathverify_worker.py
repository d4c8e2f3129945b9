"""The process behind :mod:`smolmix.grading.mathverify`: one JSON request a line on stdin
(``[prediction, reference]``), one JSON reply a line on stdout (``"equal"``, ``"different"`` or
``"error"``). It announces ``"ready"`` once math-verify is imported, or ``{"error": ...}``.

math-verify's own (signal) timeouts are off: the parent kills this process on a timeout.
Relations and sets compare both ways (``x \\ge 3`` is ``[3, \\infty)``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

MEMORY_LIMIT = 4 << 30  # bytes of address space: a runaway expression fails fast, not the host


def main() -> None:
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # run as a script: smolmix/grading/*.py must not shadow other modules
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the replies
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this process ends
    try:
        import resource  # POSIX only: the limit is best effort

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    try:
        from math_verify import parse, verify  # in the worker only: a missing one is a reply
    except ImportError as exc:
        out.write(json.dumps({"error": str(exc)}) + "\n")
        return
    logging.disable(logging.WARNING)  # "timeout is disabled": on purpose
    verify(parse("$\\frac{1}{2}$", parsing_timeout=None), parse("$0.5$", parsing_timeout=None),
           timeout_seconds=None)  # the first call's lazy set-up, before any timeout runs
    out.write('"ready"\n')
    for line in sys.stdin:
        prediction, reference = json.loads(line)
        try:
            gold = parse(f"${reference}$", parsing_timeout=None)
            answer = parse(f"${prediction}$", parsing_timeout=None)
            same = verify(gold, answer, timeout_seconds=None, allow_set_relation_comp=True)
            reply = "equal" if same else "different"
        except Exception:  # noqa: BLE001 - any failure is a verdict, not a crash
            reply = "error"
        out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
