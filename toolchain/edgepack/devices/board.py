"""The runner's entry point ON THE BOARD: ``__main__.py`` of the zipapp ``runner.py`` builds.

``python3 runner.pyz spec.json`` loads the artifact with edgepack's own runtime adapter, times
it with the same ``measure`` the host uses (load, first inference, warm-up, percentiles, peak
RSS), runs the host's inputs through it, and prints ONE JSON line: the latency, the outputs
(an .npz, base64) and the session's signature. A spec of mode "turns" instead times several
files in turns, as the build's speed step does on the host, and answers each file's p50 per
round. Runtimes print C++ notices on fd 1, so fd 1 is pointed at /dev/null while they run and
the result goes to a saved copy of it.

Only numpy, a runtime and the modules inside the zipapp are imported.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from typing import Any


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if spec.get("mode") == "turns":
        return turns(spec)
    import numpy as np

    from edgepack.runtimes import get_runtime
    from edgepack.runtimes.base import RuntimeOptions
    from edgepack.validate.latency import measure

    runtime = get_runtime(spec["runtime"])
    if not runtime.available():
        return {"ok": False, "error_type": "MissingRuntime",
                "error": f"the {spec['runtime']} runtime is not installed"}
    with np.load(spec["inputs"], allow_pickle=False) as npz:
        feed = {name: npz[f"in{i}"] for i, name in enumerate(spec["input_names"])}
    options = RuntimeOptions(threads=spec["threads"])
    # latency on one sample, as the host measures it; peak RSS first, before a second session
    stats = measure(spec["runtime"], spec["model"], {k: v[:1] for k, v in feed.items()},
                    options, warmup=spec["warmup"], runs=spec["runs"], isolated=True)
    session = runtime.load(spec["model"], options)
    outputs = list(session.run(feed).values())
    buffer = io.BytesIO()
    np.savez(buffer, **{f"out{i}": o for i, o in enumerate(outputs)})
    return {"ok": True, "latency": stats.to_dict(), "runtime_version": session.runtime_version,
            "signature": session.signature.to_dict(), "outputs": len(outputs),
            "outputs_npz": base64.b64encode(buffer.getvalue()).decode("ascii")}


def turns(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's models loaded and warmed up, then timed in turns on their own feeds."""
    import numpy as np

    from edgepack.runtimes import get_runtime
    from edgepack.runtimes.base import RuntimeOptions
    from edgepack.validate.latency import time_in_turns, time_runs

    runtime = get_runtime(spec["runtime"])
    if not runtime.available():
        return {"ok": False, "error_type": "MissingRuntime",
                "error": f"the {spec['runtime']} runtime is not installed"}
    options = RuntimeOptions(threads=spec["threads"], extra=spec.get("extra", {}))
    loaded = []
    with np.load(spec["inputs"], allow_pickle=False) as npz:
        for j, model in enumerate(spec["models"]):
            feed = {name: npz[f"m{j}_in{i}"] for i, name in enumerate(spec["input_names"][j])}
            session = runtime.load(model, options)
            time_runs(session, feed, spec["warmup"], 0)
            loaded.append((session, feed))
    p50 = time_in_turns(loaded, spec["rounds"], spec["runs"])
    return {"ok": True, "p50_ms": p50.tolist(), "runtime_version": loaded[0][0].runtime_version}


def main(argv: list[str]) -> int:
    result_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        with open(argv[1], encoding="utf-8") as fh:
            result = run(json.load(fh))
    except Exception as exc:  # every failure goes back to the host as data, with its kind
        result = {"ok": False, "error_type": type(exc).__name__,
                  "error": str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""}
    os.write(result_fd, (json.dumps(result) + "\n").encode("utf-8"))
    return 0 if result["ok"] else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
