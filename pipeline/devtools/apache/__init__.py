"""Apache Kafka for the test suite and the benchmarks: fetched with Maven, run from its jars, no Docker.

- ``pom.xml``: the broker's Maven coordinates (``org.apache.kafka:kafka_2.13``);
- :mod:`.fetch`: ``mvn dependency:copy-dependencies`` once, into the user's cache;
- :mod:`.config`: the broker configuration (listeners, SCRAM, TLS, ACLs), shared with deploy/;
- :mod:`.launcher`: certificates, ``StorageTool format``, one node or three, kill and restart.
"""
