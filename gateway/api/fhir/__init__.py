"""The FHIR R4 REST API at ``/fhir`` (JSON only).

    app.include_router(fhir_router(store))
    install_fhir_errors(app)
    app.add_middleware(GZipMiddleware, minimum_size=1000)
"""

from __future__ import annotations

from .outcomes import FhirError, install_fhir_errors, status_for
from .routes import fhir_router

__all__ = ["FhirError", "fhir_router", "install_fhir_errors", "status_for"]
