"""VirusTotal emulator: a real HTTP server speaking enough of API v3 and v2 for tests and the demo.

Deterministic data for any indicator, queued-then-completed analyses, a strict
rate limit and daily quota, fault injection and counters. Start it with the CLI
(``vtstream emulator``) or in-process::

    running = await start(EmulatorConfig(port=0, rate_per_minute=4))
    ...  # point the client at running.url
    await running.stop()

Modules: ``server`` (app, middleware, control endpoints), ``routes_v3`` /
``routes_v2`` (handlers), ``state`` (config and state), ``control`` (quota gate,
counters, faults), ``scans`` (submitted analyses), ``data`` / ``filedata`` /
``engines`` (deterministic facts), ``v3`` / ``v2`` (body shapes).
"""

from pipeline.devtools.emulator.server import RunningEmulator, create_app, serve, start
from pipeline.devtools.emulator.state import EmulatorConfig

__all__ = ["EmulatorConfig", "RunningEmulator", "create_app", "serve", "start"]
