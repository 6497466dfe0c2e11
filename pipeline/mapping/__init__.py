"""The mapping engine: the data files in ``mappings/`` applied to VirusTotal bodies."""

from pipeline.mapping.engine import (OMITTED_ATTRIBUTES, OMITTED_RELATIONS, STEPS, AddOptions, Mapped, MappingSet,
                                     detect_step, indicator_from_body, load_mappings, map_files, map_saved_response)

__all__ = [
    "STEPS", "AddOptions", "Mapped", "MappingSet", "load_mappings", "detect_step",
    "indicator_from_body", "map_saved_response", "map_files", "OMITTED_RELATIONS", "OMITTED_ATTRIBUTES",
]
