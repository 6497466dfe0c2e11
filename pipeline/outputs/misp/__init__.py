"""The MISP feed: enrichment results from Kafka as MISP's own feed format (manifest, hashes, one event a day)."""
