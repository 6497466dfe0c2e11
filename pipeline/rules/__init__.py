"""Pure rules, no I/O: indicator classification, the policy gate, cache freshness, file handling."""
