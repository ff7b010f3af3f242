"""Research data out: FHIR Bulk Data ``$export`` jobs (``manager``), their kick-off
parameters (``request``), ``_typeFilter`` (``filters``) and per-study pseudonyms
(``pseudonyms``). The routes are in ``gateway.api.fhir.export``; the cohorts the Group
exports use are kept by the store (``gateway.store.cohort``)."""
