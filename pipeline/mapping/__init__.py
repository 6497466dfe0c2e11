"""The mapping engine: the data files in ``mappings/`` applied to VirusTotal bodies.

``model`` holds the compiled rules, ``template`` the name templates, ``loader``
reads and validates the files, ``apply`` maps bodies; ``functions`` are the
JMESPath functions and converters the files may use.
"""

from pipeline.mapping.apply import (MappingSet, detect_step, indicator_from_body, load_mappings, map_files,
                                    map_saved_response)
from pipeline.mapping.model import OMITTED_ATTRIBUTES, OMITTED_RELATIONS, STEPS, AddOptions, Mapped

__all__ = [
    "STEPS", "AddOptions", "Mapped", "MappingSet", "load_mappings", "detect_step",
    "indicator_from_body", "map_saved_response", "map_files", "OMITTED_RELATIONS", "OMITTED_ATTRIBUTES",
]
