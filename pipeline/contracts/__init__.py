"""Every shape that crosses a topic, a table, a process or a stage: frozen, typed, versioned."""
