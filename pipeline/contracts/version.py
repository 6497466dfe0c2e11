"""The version every contract is written with."""

#: Version 0 is the untyped dict shape written before the typed records existed.
RECORD_VERSION = 1
