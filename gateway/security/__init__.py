"""The trust boundary: who calls (``Principal``), what they may do (SMART v2 scopes) and
which data they may see (study and site restrictions)."""

from gateway.security.principal import ANONYMOUS, Principal, principal_of

__all__ = ["ANONYMOUS", "Principal", "principal_of"]
