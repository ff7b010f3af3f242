"""PlaGenCell gateway: HL7 v2 and lab exports in, pseudonymised FHIR R4 out."""

__version__ = "0.1.0"
