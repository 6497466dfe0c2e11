"""vtstream: streaming VirusTotal enrichment on Kafka (faust-streaming workers)."""
