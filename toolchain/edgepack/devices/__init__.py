"""On-device validation over plain SSH: the inventory, the transport, the runner, the checks.

A model that passes on the x86 host can still fail on the board: an operator version the
board's runtime does not know, an ARM kernel that computes differently, a delegate that falls
back. This package runs the artifact on the real device with nothing installed there but
python3, numpy and a runtime, and compares what it computed with the host.

    inventory.py  where devices are listed (user config or the project's edgepack.yaml)
    ssh.py        connections with a strict host-key policy (keys or agent only)
    probe.py      the stdlib-only script that reports what a board has (sent over stdin)
    facts.py      what the probe found, as a typed object
    runner.py     builds the self-contained zipapp the board runs (board.py is its __main__)
    compat.py     artifact-vs-device checks before anything is uploaded
    opversions.py TFLite operator versions vs the board's LiteRT runtime version
                  (data: tflite_op_versions.json, with its sources)
    lock.py       one benchmark per device at a time (a lock file on this host)
    agreement.py  device outputs vs the host's, with tolerances that say why
    remote.py     upload, run, fetch, clean up: ``bench_on_device`` / ``bench_on_devices``
                  (``edgepack bench ARTIFACT... --device NAME...`` is measure/devices.py)

Nothing here imports paramiko or a framework at module level: ``edgepack --help`` stays instant.
"""
