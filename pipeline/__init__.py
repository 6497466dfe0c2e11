"""vtstream: streaming VirusTotal enrichment on Kafka (faust-streaming workers)."""

__version__ = "0.1.0"
