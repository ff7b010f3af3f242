"""SQL on FHIR v2 ViewDefinitions: validate and compile a view (``definition``), run it over
resources (``engine``), write its rows as JSON, NDJSON or CSV (``output``).

Pure code: no I/O. The store streams the resources (``gateway.store.views``), the FHIR API
serves ``$viewdefinition-run`` (``gateway.api.fhir.views``)."""
