"""The fuzz worker: runs edgepack CLI commands in-process, one per line of stdin, and answers
one JSON line per command on stdout.

It is a separate process so that a native crash (a segfault in a runtime handed a malformed
file) kills the worker, not pytest: the parent sees the worker die, records the case as a
failure ("crashed: signal 11") and starts a new worker for the next case. Framework imports
happen once per worker, so a case costs milliseconds, not an interpreter start.

Request:  {"argv": [...], "cwd": "DIR", "bound_s": 20}
Answer:   {"exit_code": int, "output": str, "exception": str | null, "hang": bool, "seconds": s}
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


class Hang(BaseException):
    """Raised by SIGALRM: the case ran past its bound (BaseException, so nothing catches it)."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang()


def main() -> None:
    from click.testing import CliRunner
    from edgepack.cli import cli

    # answers go to the real stdout; anything a framework prints there goes to stderr
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    signal.signal(signal.SIGALRM, _alarm)
    for line in sys.stdin:
        req = json.loads(line)
        os.chdir(req.get("cwd") or ".")
        start = time.monotonic()
        answer = {"exit_code": None, "output": "", "exception": None, "hang": False}
        signal.alarm(int(req.get("bound_s", 20)))
        try:
            result = CliRunner().invoke(cli, req["argv"], catch_exceptions=True)
            answer["exit_code"] = result.exit_code
            answer["output"] = result.output[-2000:]
            exc = result.exception
            if exc is not None and not isinstance(exc, SystemExit):
                answer["exception"] = "".join(traceback.format_exception(exc))[-3000:]
        except Hang:
            answer["hang"] = True
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as a failure
            answer["exception"] = "".join(traceback.format_exception(exc))[-3000:]
        finally:
            signal.alarm(0)
        answer["seconds"] = round(time.monotonic() - start, 3)
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
