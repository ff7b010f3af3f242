"""FHIR search: the parameter registry (``params``), index extraction (``index``) and
query compilation (``query``)."""
