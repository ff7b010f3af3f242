"""FHIRPath for ViewDefinitions: ``fhirpathpy`` (maintained, MIT), each path parsed once.

What this module adds to the library, and why:

* a strict parser: ``fhirpathpy.parse`` recovers from syntax errors silently (``name.(`` is
  accepted) and may stop before the end of the text; a view with such a path must be
  refused before anything runs (400 naming the path), so the library's lexer and parser are
  driven here with a listener that raises, and the whole text must be consumed;
* a check of the functions a path calls against what the engine implements, so that an
  unknown function is a 400 at compile time, not an error on the first matching row;
* the SQL-on-FHIR functions: ``getResourceKey()`` (the resource's ``id``) and
  ``getReferenceKey([type])`` (the ``id`` part of a ``Type/id`` reference, empty when it
  names another type), ``lowBoundary()``/``highBoundary()`` are not provided;
* ``plain``: the library's values (``Decimal``, date/time objects, typed nodes) as JSON
  values for a row.

Paths are compiled against the R4 model so that choice types resolve (``value.ofType(
Quantity)``); evaluation keeps typed nodes (``returnRawData``) so that a ``forEach`` focus
still knows its type when the nested paths run on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.engine import do_eval
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.invocations.constants import constants as now_constants
from fhirpathpy.engine.nodes import FP_Quantity, FP_Type, ResourceNode, TypeInfo
from fhirpathpy.engine.util import arraify, process_user_invocation_table
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from .fastpath import Unsure, as_library, as_values, compile_fast, focus_items

Compiled = Callable[[Any, dict[str, Any]], list[Any]]
R4 = models["r4"]
# the library consults this global in ofType() (subtypes, backbone elements) but sets it
# only when is/as run: set once, so that ofType() does not depend on what ran before
TypeInfo.model = R4  # type: ignore[assignment]


class PathError(ValueError):
    """A FHIRPath expression that cannot be used (the message names no data)."""


def _resource_key(inputs: list[Any]) -> list[Any]:
    return [i["id"] for i in inputs if isinstance(i, dict) and isinstance(i.get("id"), str)]


def _reference_key(inputs: list[Any], wanted: Any = None) -> list[Any]:
    rtype = getattr(wanted, "name", wanted)
    keys = []
    for item in inputs:
        reference = item.get("reference") if isinstance(item, dict) else None
        if not isinstance(reference, str) or "/" not in reference:
            continue
        parts = reference.split("/_history/")[0].split("/")
        if len(parts) < 2 or (rtype is not None and parts[-2] != rtype):
            continue
        keys.append(parts[-1])
    return keys


FUNCTIONS = {
    "getResourceKey": {"fn": _resource_key, "arity": {0: []}},
    "getReferenceKey": {"fn": _reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
}
KNOWN_FUNCTIONS = frozenset(invocation_registry) | frozenset(FUNCTIONS)
_TABLE = process_user_invocation_table(FUNCTIONS)  # type: ignore[no-untyped-call]


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int,  # noqa: N802
                    msg: str, e: Any) -> None:
        raise PathError(f"syntax error at character {column + 1}: "
                        f"{msg.split(' expecting ')[0]}")


def parse(text: str) -> dict[str, Any]:
    """The library's AST of ``text``; ``PathError`` unless all of it is one expression."""
    if not isinstance(text, str) or not text.strip():
        raise PathError("the path is empty")
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    listener = ASTPathListener()  # type: ignore[no-untyped-call]
    try:
        tree = parser.expression()
    except PathError:
        raise
    except Exception as exc:  # the generated lexer raises its own errors  # noqa: BLE001
        raise PathError(f"syntax error: {type(exc).__name__}") from exc
    if tokens.LA(1) != Token.EOF:
        raise PathError(f"unexpected text after character {tokens.LT(1).start}")
    ParseTreeWalker().walk(listener, tree)
    ast: dict[str, Any] = listener.parentStack[0]
    return ast


def functions_called(ast: dict[str, Any]) -> Iterable[str]:
    for node in ast.get("children") or ():
        if node.get("type") == "Functn":
            name = next((c.get("text") for c in node.get("children") or ()
                         if c.get("type") == "Identifier"), None)
            if name:
                yield str(name).strip("`")
        yield from functions_called(node)


TYPED_FUNCTIONS = frozenset({"ofType", "is", "as", "getReferenceKey"})
SYSTEM_TYPES = frozenset({"Boolean", "String", "Integer", "Decimal", "Date", "DateTime",
                          "Time", "Quantity"})
KNOWN_TYPES = frozenset(R4["type2Parent"]) | SYSTEM_TYPES | {"Element", "Resource",
                                                            "DomainResource", "BackboneElement"}


def type_arguments(ast: dict[str, Any]) -> Iterable[str]:
    """The type arguments of ``ofType``/``is``/``as``/``getReferenceKey`` ("" for one
    that is not a type name, such as a number)."""
    for node in ast.get("children") or ():
        if node.get("type") == "Functn":
            children = node.get("children") or ()
            name = next((c.get("text") for c in children if c.get("type") == "Identifier"),
                        None)
            params = next((c for c in children if c.get("type") == "ParamList"), None)
            if name in TYPED_FUNCTIONS and params is not None:
                for param in params.get("children") or ():
                    text = str(param.get("text") or "")
                    literal = any(c.get("type") == "LiteralTerm"
                                  for c in param.get("children") or ())
                    yield "" if literal else text.replace("`", "")
        yield from type_arguments(node)


def constants_used(ast: dict[str, Any]) -> Iterable[str]:
    for node in ast.get("children") or ():
        if node.get("type") == "ExternalConstant":
            name = next((c.get("text") for c in node.get("children") or ()
                         if c.get("type") == "Identifier"), None)
            if name:
                yield str(name).strip("`")
        yield from constants_used(node)


STANDARD_VARIABLES = frozenset({"resource", "rootResource", "context", "ucum", "sct",
                                "loinc", "rowIndex"})


def compile_path(text: str, constants: Iterable[str] = (), *, fast: bool = True) -> Path:
    """A function (node, variables) → the path's values (typed nodes or primitives);
    ``PathError`` for a syntax error, an unknown function or an undefined ``%constant``."""
    ast = parse(text)
    unknown = sorted(set(functions_called(ast)) - KNOWN_FUNCTIONS)
    if unknown:
        raise PathError(f"unknown function {unknown[0]}()")
    for kind in type_arguments(ast):
        if kind.removeprefix("FHIR.").removeprefix("System.") not in KNOWN_TYPES:
            raise PathError(f"{kind or 'a literal'} is not a FHIR type")
    undefined = sorted(set(constants_used(ast)) - set(constants) - STANDARD_VARIABLES)
    if undefined:
        raise PathError(f"undefined constant %{undefined[0]}")

    expression = ast["children"][0]

    def slow(node: Any, variables: dict[str, Any]) -> list[Any]:
        # fhirpathpy's apply_parsed_path with returnRawData, and $this set at the top
        # (the library leaves it unset: '$this' in a forEach column would fail)
        now_constants.reset()  # type: ignore[no-untyped-call]
        root = arraify(node)  # type: ignore[no-untyped-call]
        ctx = {"dataRoot": root, "$this": root, "model": R4,
               "vars": {"context": node, "ucum": "http://unitsofmeasure.org", **variables},
               "userInvocationTable": _TABLE}
        return [item for item in arraify(do_eval(ctx, root, expression))  # type: ignore[no-untyped-call]
                if not _extension_only(item)]

    return Path(text, slow, compile_fast(expression, constants) if fast else None)


_PLAIN = frozenset({str, int, float, bool})


class Path:
    """A compiled path: ``path(node, variables)`` gives its values as the library does
    (typed nodes or primitives: a ``forEach`` focus), ``path.values(node, variables)``
    the JSON values (a column's cells). ``fast``: the closures of ``fastpath`` (None:
    the expression is outside their subset); they hand over to the library on data they
    are not sure of."""

    __slots__ = ("fast", "slow", "text")

    def __init__(self, text: str, slow: Compiled, fast: Any) -> None:
        self.text, self.slow, self.fast = text, slow, fast

    def __call__(self, node: Any, variables: dict[str, Any]) -> list[Any]:
        if self.fast is not None:
            try:
                return as_library(self.fast(focus_items(node), variables))
            except Unsure:
                pass
        return self.slow(node, variables)

    def values(self, node: Any, variables: dict[str, Any]) -> list[Any]:
        if self.fast is not None:
            try:
                found: list[Any] = self.fast(
                    [node] if type(node) is dict else focus_items(node), variables)
            except Unsure:
                pass
            else:
                if len(found) == 1:  # most cells: one plain value, no conversion
                    item = found[0]
                    kind = type(item)
                    if kind is tuple and type(item[0]) in _PLAIN:
                        return [item[0]]
                    if kind in _PLAIN:
                        return found
                return as_values(found)
        return [plain(v) for v in self.slow(node, variables)]


def _extension_only(item: Any) -> bool:
    """The library's stand-in for a primitive that has only extensions (no value)."""
    return isinstance(item, ResourceNode) and isinstance(item.data, dict) \
        and list(item.data) == ["extension"]


def plain(value: Any) -> Any:
    """A FHIRPath result as a JSON value for a row cell."""
    if isinstance(value, ResourceNode):
        value = value.data
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) \
            else float(value)
    if isinstance(value, FP_Quantity):
        return str(value)
    if isinstance(value, FP_Type):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
