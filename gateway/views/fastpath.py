"""A FHIRPath expression compiled once into Python closures: the fast path of the view engine.

The subset real views use is compiled here; anything else (and any data on which the
closures cannot be sure to give the library's answer) goes to ``fhirpathpy``, per
expression (``compile_fast`` returns None) or per evaluation (``Unsure``).

Supported: member navigation (``a.b.c``, choice elements ``value`` → ``valueQuantity`` …,
``extension``), ``first()``, ``exists()`` and ``exists(criteria)``, ``empty()``,
``not()``, ``where(criteria)``, ``ofType(T)``, ``extension(url)``, ``join([sep])``,
``startsWith(text)``, ``endsWith(text)`` (a text parameter: a literal or a ``%constant``),
``getResourceKey()``, ``getReferenceKey([T])``, an indexer with a literal (``a[0]``),
``$this``, ``%constant`` (a primitive) and ``%rowIndex``, string, number, boolean and
``{}`` literals, ``=``, ``!=``, ``<``, ``>``, ``<=``, ``>=``, ``and``, ``or``, ``xor``,
``implies``, parentheses.

Semantics are the library's (the differential test, tests/views/test_fastpath.py, runs
both on the same resources): a collection is a list; an element of a resource is a node
``(data, type path)`` (the library's ``ResourceNode``), anything else a plain value;
empty operands give empty; the type path follows the R4 model (choice types,
``pathsDefinedElsewhere``, ``path2Type``) so that ``ofType`` sees the type the library
sees. One deliberate difference: a primitive's ``_x`` sibling (its id and extensions) is
not a node of its own here (the library adds it to the collection as an extra node,
which FHIRPath does not: the extensions belong to the primitive's node).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

R4 = models["r4"]
_CHOICES: dict[str, list[str]] = R4["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = R4["pathsDefinedElsewhere"]
_PATH2TYPE: dict[str, str] = R4["path2Type"]
_TYPE2PARENT: dict[str, str] = R4["type2Parent"]

Items = list[Any]
Env = dict[str, Any]
Fn = Callable[[Items, Env], Items]  # (input collection, variables) → collection


class Unsure(Exception):  # noqa: N818 (a signal, not an error)
    """Data on which the fast path cannot promise the library's answer: ask the library."""


class Unsupported(Exception):  # noqa: N818
    """An expression (or part) outside the compiled subset."""


def compile_fast(ast: dict[str, Any], constants: Any) -> Fn | None:
    """The closure of the whole expression (input: the focus collection), or None."""
    try:
        return _expr(ast, constants)
    except Unsupported:
        return None


def focus_items(node: Any) -> Items:
    """The focus as the library takes it: a typed node stays a node, a resource a value."""
    if isinstance(node, ResourceNode):
        return [(node.data, node.path)]
    if isinstance(node, list):
        raise Unsure
    return [node]


def as_library(items: Items) -> list[Any]:
    """Nodes as the library's ``ResourceNode`` (for a ``forEach`` focus), values as they
    are; a node holding only extensions dropped (as ``fhirpath._extension_only``)."""
    return [ResourceNode(item[0], item[1]) if type(item) is tuple else item  # type: ignore[no-untyped-call]
            for item in items if not _extension_only(item)]


def as_values(items: Items) -> list[Any]:
    """The JSON values of a collection (a column's cells)."""
    out = []
    for item in items:
        if type(item) is tuple:
            if _extension_only(item):
                continue
            item = item[0]
        elif type(item) is Decimal:
            item = int(item) if item == item.to_integral_value() and "." not in str(item) \
                else float(item)
        out.append(item)
    return out


def _extension_only(item: Any) -> bool:
    return type(item) is tuple and type(item[0]) is dict and len(item[0]) == 1 \
        and "extension" in item[0]


# --- expressions -----------------------------------------------------------------------

def _expr(node: dict[str, Any], constants: Any) -> Fn:
    kind = node.get("type")
    children = node.get("children") or []
    if kind is None or kind in ("TermExpression", "InvocationTerm", "ParenthesizedTerm"):
        return _expr(children[0], constants)
    if kind == "InvocationExpression":
        return _chain(node, constants)
    if kind in ("MemberInvocation", "FunctionInvocation", "ThisInvocation"):
        return _invocation(node, constants)
    if kind == "LiteralTerm":
        value = _literal(children[0])
        return lambda items, env: list(value)
    if kind == "PolarityExpression":
        return _polarity(node, constants)
    if kind == "ExternalConstantTerm":
        return _constant(children[0], constants)
    if kind == "IndexerExpression":
        return _indexer(children, constants)
    if kind in ("EqualityExpression", "InequalityExpression"):
        return _comparison(node["terminalNodeText"][0], children, constants)
    if kind in ("AndExpression", "OrExpression", "XorExpression", "ImpliesExpression"):
        return _logic(node["terminalNodeText"][0], children, constants)
    raise Unsupported(kind)


def _chain(node: dict[str, Any], constants: Any) -> Fn:
    """``a.b.first()…``: the steps of a left-deep chain applied in one loop."""
    steps: list[Fn] = []
    while node.get("type") == "InvocationExpression":
        steps.append(_invocation(node["children"][1], constants))
        node = node["children"][0]
    steps.append(_expr(node, constants))
    steps.reverse()
    if len(steps) == 2:
        first, second = steps
        return lambda items, env: second(first(items, env), env)

    def run(items: Items, env: Env) -> Items:
        for step in steps:
            items = step(items, env)
        return items
    return run


def _literal(node: dict[str, Any]) -> list[Any]:
    kind, text = node.get("type"), node.get("text") or ""
    if kind == "BooleanLiteral":
        return [text == "true"]
    if kind == "NullLiteral":
        return []
    if kind == "NumberLiteral":
        number = Decimal(text)
        return [int(number)] if number == int(number) else [number]
    if kind == "StringLiteral" and "\\" not in text:
        return [text[1:-1]]
    raise Unsupported(kind)


def _polarity(node: dict[str, Any], constants: Any) -> Fn:
    inner = node["children"][0]
    while inner.get("type") == "TermExpression":
        inner = inner["children"][0]
    if inner.get("type") != "LiteralTerm" or inner["children"][0].get("type") != \
            "NumberLiteral":
        raise Unsupported("polarity")
    value = _literal(inner["children"][0])
    if node["terminalNodeText"][0] == "-":
        value = [-value[0]]
    return lambda items, env: list(value)


def _constant(node: dict[str, Any], constants: Any) -> Fn:
    name = str(node["children"][0]["text"]).strip("`")
    if name in ("resource", "rootResource", "context"):
        raise Unsupported(f"%{name}")  # a resource as a value: the library's

    def run(items: Items, env: Env) -> Items:
        value = env.get(name, _MISSING)
        if value is None:
            return []
        if type(value) not in (str, int, bool, Decimal):
            raise Unsure  # undefined, or not a primitive
        return [value]
    return run


_MISSING = object()


def _indexer(children: list[dict[str, Any]], constants: Any) -> Fn:
    collection = _expr(children[0], constants)
    index = children[1]
    while index.get("type") == "TermExpression":
        index = index["children"][0]
    if index.get("type") != "LiteralTerm" or index["children"][0].get("type") != \
            "NumberLiteral":
        raise Unsupported("indexer")
    position = _literal(index["children"][0])[0]
    if type(position) is not int:
        raise Unsupported("indexer")

    def run(items: Items, env: Env) -> Items:
        found = collection(items, env)
        return [found[position]] if 0 <= position < len(found) else []
    return run


# --- invocations (applied to a collection) ---------------------------------------------

def _invocation(node: dict[str, Any], constants: Any) -> Fn:
    kind = node.get("type")
    if kind == "ThisInvocation":
        return lambda items, env: items
    if kind == "MemberInvocation":
        return _member(str(node["children"][0]["text"]).strip("`"))
    if kind == "FunctionInvocation":
        functn = node["children"][0]
        parts = functn.get("children") or []
        name = str(parts[0]["text"]).strip("`")
        params = parts[1].get("children") or [] if len(parts) > 1 else []
        make = _FUNCTIONS.get(name)
        if make is None:
            raise Unsupported(f"{name}()")
        return make(params, constants)
    raise Unsupported(kind)


def _step(path: str | None, key: str) -> tuple[list[tuple[str, str]], str | None]:
    """Where ``key`` leads from a node of type path ``path``: the JSON fields to look at
    (one, or one per type of a choice element) with the type path of what is found, as
    the library's member navigation works it out."""
    child = f"{path}.{key}" if path else f"_.{key}"
    child = _ELSEWHERE.get(child, child)
    types = _CHOICES.get(child)
    if types:
        return [(key + t, _PATH2TYPE.get(child + t, child + t)) for t in types], None
    if key == "extension":
        child = "Extension"
    return [(key, _PATH2TYPE.get(child, child))], child


def _member(key: str) -> Fn:
    if key[:1].isupper() or key == "length":
        raise Unsupported(key)  # a type name filter / the library's string length
    # type path of the parent → (field, type path of the child), or a list of them for a
    # choice element
    cache: dict[str | None, Any] = {}

    def lookup(path: str | None) -> Any:
        fields, _ = _step(path, key)
        if len(fields) == 1 and fields[0][0] == key:
            cache[path] = fields[0]
        else:  # a choice: JSON field → (its place in the model's order, type path)
            cache[path] = {field: (i, child) for i, (field, child) in enumerate(fields)}
        return cache[path]

    def run(items: Items, env: Env) -> Items:
        out: Items = []
        for item in items:
            if type(item) is tuple:
                data, path = item
            else:
                data = item
                path = item.get("resourceType") if type(item) is dict else None
            if type(data) is not dict:
                continue
            step = cache.get(path) or lookup(path)
            if type(step) is tuple:
                found = data.get(key)
                child = step[1]
            else:  # the library takes the first type of the model's order present
                best = None
                for field in data:
                    place = step.get(field)
                    if place is not None and data[field] is not None \
                            and (best is None or place[0] < best[0]):
                        best = (place[0], place[1], field)
                if best is None:
                    continue
                found, child = data[best[2]], best[1]
            if found is None or found == []:
                continue
            if type(found) is list:
                out.extend((x, x["resourceType"]) if type(x) is dict
                           and "resourceType" in x else (x, child) for x in found)
            elif type(found) is dict and "resourceType" in found:
                out.append((found, found["resourceType"]))
            else:
                out.append((found, child))
        return out
    return run


def _no_params(params: list[Any], name: str) -> None:
    if params:
        raise Unsupported(f"{name}() with parameters")


def _first(params: list[Any], constants: Any) -> Fn:
    _no_params(params, "first")
    return lambda items, env: items[:1]


def _exists(params: list[Any], constants: Any) -> Fn:
    if params:
        where = _where(params, constants)
        return lambda items, env: [bool(where(items, env))]
    return lambda items, env: [bool(items)]


def _empty(params: list[Any], constants: Any) -> Fn:
    _no_params(params, "empty")
    return lambda items, env: [not items]


def _not(params: list[Any], constants: Any) -> Fn:
    _no_params(params, "not")

    def run(items: Items, env: Env) -> Items:
        if len(items) != 1:
            return []
        data = _data(items[0])
        return [not data] if type(data) is bool else [False]
    return run


def _where(params: list[Any], constants: Any) -> Fn:
    if len(params) != 1:
        raise Unsupported("where()")
    criteria = _expr(params[0], constants)

    def run(items: Items, env: Env) -> Items:
        kept = []
        for item in items:
            found = criteria([item], env)
            # the library keeps an item when the criteria's first value is truthy (a
            # node always is)
            if found and (type(found[0]) is tuple or found[0]):
                kept.append(item)
        return kept
    return run


def _type_name(params: list[Any]) -> tuple[str | None, str]:
    if len(params) != 1:
        raise Unsupported("a type parameter")
    text = str(params[0].get("text") or "").replace("`", "")
    parts = text.split(".")
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1 and parts[0]:
        return None, parts[0]
    raise Unsupported(text)


def _of_type(params: list[Any], constants: Any) -> Fn:
    namespace, name = _type_name(params)
    verdicts: dict[Any, bool] = {}

    def matches(item: Any) -> bool:
        key = item[1] if type(item) is tuple else type(item)
        verdict = verdicts.get(key)
        if verdict is None:
            info = _type_info(item)
            verdict = verdicts[key] = _is(info, namespace, name)
        return verdict

    return lambda items, env: [item for item in items if matches(item)]


def _type_info(item: Any) -> tuple[str, str]:
    """(namespace, name) as the library's ``TypeInfo.from_value`` (model set)."""
    if type(item) is tuple:
        path = item[1]
        if path is None:
            raise Unsure  # the library fails on an untyped node
        if path.startswith("System."):
            return "System", path[7:]
        return "FHIR", path if "." not in path else "BackboneElement"
    names = {int: "Integer", Decimal: "Decimal", float: "Decimal", str: "String",
             bool: "Boolean", dict: "Object"}
    if type(item) not in names:
        raise Unsure
    return "System", names[type(item)]


def _is(info: tuple[str, str], namespace: str | None, name: str) -> bool:
    mine, kind = info
    if namespace is not None and mine != namespace:
        return False
    if mine == "FHIR":
        current: str | None = kind
        while current:
            if current == name:
                return True
            current = _TYPE2PARENT.get(current) or _PATH2TYPE.get(current)
        return False
    return kind == name


def _string_param(params: list[Any], name: str) -> Callable[[Env], str]:
    """A parameter that must be one string: a literal, or a ``%constant`` (looked up
    when the path runs; not a string: the library's error)."""
    if len(params) != 1:
        raise Unsupported(name)
    node = params[0]
    while node.get("type") in ("TermExpression", "LiteralTerm"):
        node = node["children"][0]
    if node.get("type") == "ExternalConstantTerm":
        constant = _constant(node["children"][0], None)

        def lookup(env: Env) -> str:
            found = constant([], env)
            if len(found) != 1 or type(found[0]) is not str:
                raise Unsure
            return str(found[0])
        return lookup
    value = _literal(node) if node.get("type") == "StringLiteral" else None
    if not value:
        raise Unsupported(name)
    text = str(value[0])
    return lambda env: text


def _extension(params: list[Any], constants: Any) -> Fn:
    url_of = _string_param(params, "extension()")

    def run(items: Items, env: Env) -> Items:
        out = []
        url = url_of(env)
        for item in items:
            data = _data(item)
            if type(data) is not dict:
                continue
            for extension in data.get("extension", ()):
                if type(extension) is not dict or "url" not in extension:
                    raise Unsure
                if extension["url"] == url:
                    out.append((extension, "Extension"))
                    break
        return out
    return run


def _affix(starts: bool) -> Callable[[list[Any], Any], Fn]:
    """``startsWith(text)`` / ``endsWith(text)`` on one string (the library's rules:
    empty gives empty, an empty string false, anything but one string an error)."""
    def make(params: list[Any], constants: Any) -> Fn:
        affix_of = _string_param(params, "startsWith()" if starts else "endsWith()")

        def run(items: Items, env: Env) -> Items:
            if not items:
                return []
            affix = affix_of(env)
            if len(items) != 1 or type(_data(items[0])) is not str:
                raise Unsure
            text = _data(items[0])
            if not text:
                return [False]
            return [text.startswith(affix) if starts else text.endswith(affix)]
        return run
    return make


def _join(params: list[Any], constants: Any) -> Fn:
    separator_of = _string_param(params, "join()") if params else lambda env: ""

    def run(items: Items, env: Env) -> Items:
        separator = separator_of(env)  # first, as the library (an error even on empty)
        if not items:
            return []
        texts = [_data(item) for item in items]
        if not all(type(t) is str for t in texts):
            raise Unsure
        return [separator.join(texts)]
    return run


def _resource_key(params: list[Any], constants: Any) -> Fn:
    _no_params(params, "getResourceKey")

    def run(items: Items, env: Env) -> Items:
        out = []
        for item in items:
            data = _data(item)
            if type(data) is dict and type(data.get("id")) is str:
                out.append(data["id"])
        return out
    return run


def _reference_key(params: list[Any], constants: Any) -> Fn:
    wanted = _type_name(params)[1] if params else None

    def run(items: Items, env: Env) -> Items:
        out = []
        for item in items:
            data = _data(item)
            reference = data.get("reference") if type(data) is dict else None
            if type(reference) is not str or "/" not in reference:
                continue
            parts = reference.split("/_history/")[0].split("/")
            if len(parts) >= 2 and (wanted is None or parts[-2] == wanted):
                out.append(parts[-1])
        return out
    return run


def _data(item: Any) -> Any:
    return item[0] if type(item) is tuple else item


_FUNCTIONS: dict[str, Callable[[list[Any], dict[str, Any]], Fn]] = {
    "first": _first, "exists": _exists, "empty": _empty, "not": _not, "where": _where,
    "ofType": _of_type, "extension": _extension, "join": _join,
    "getResourceKey": _resource_key, "getReferenceKey": _reference_key,
    "startsWith": _affix(True), "endsWith": _affix(False),
}


# --- operators -------------------------------------------------------------------------

def _comparison(op: str, children: list[dict[str, Any]], constants: Any) -> Fn:
    if op not in ("=", "!=", "<", ">", "<=", ">="):
        raise Unsupported(op)  # ~ and !~: the library's
    left, right = _expr(children[0], constants), _expr(children[1], constants)
    equality = op in ("=", "!=")

    def run(items: Items, env: Env) -> Items:
        a, b = left(items, env), right(items, env)
        if not a or not b:
            return []
        if equality:
            if len(a) != len(b):
                return [op == "!="]
            da, db = _comparable(a[0]), _comparable(b[0])
            return [(da == db) == (op == "=")]
        if len(a) > 1 or len(b) > 1:
            raise Unsure
        return [_order(op, _data(a[0]), _data(b[0]))]
    return run


def _comparable(item: Any) -> Any:
    if type(item) is tuple:
        if item[1] == "Quantity":
            raise Unsure  # the library compares quantities as UCUM quantities
        return item[0]
    if type(item) not in (str, int, bool, Decimal, float):
        raise Unsure
    return item


def _order(op: str, a: Any, b: Any) -> bool:
    if type(a) is float:
        a = Decimal(str(a))
    if type(b) is float:
        b = Decimal(str(b))
    numbers = type(a) in (int, Decimal) and type(b) in (int, Decimal)
    if not numbers and (type(a) is not type(b) or type(a) not in (str, bool, int)):
        raise Unsure  # dates against strings, mixed types: the library's rules
    if op == "<":
        return bool(a < b)
    if op == ">":
        return bool(a > b)
    if op == "<=":
        return bool(a <= b)
    return bool(a >= b)


_EMPTY: list[Any] = []


def _boolean(found: Items) -> Any:
    """An operand of and/or/xor/implies: True, False, or [] (empty)."""
    if not found:
        return _EMPTY
    if len(found) > 1:
        raise Unsure
    value = _data(found[0])
    if value is not True and value is not False:
        raise Unsure
    return value


def _logic(op: str, children: list[dict[str, Any]], constants: Any) -> Fn:
    left, right = _expr(children[0], constants), _expr(children[1], constants)
    combine = {"and": _and, "or": _or, "xor": _xor, "implies": _implies}.get(op)
    if combine is None:
        raise Unsupported(op)

    def run(items: Items, env: Env) -> Items:
        result = combine(_boolean(left(items, env)), _boolean(right(items, env)))
        return [] if result is _EMPTY else [result]
    return run


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is _EMPTY or b is _EMPTY:
        return _EMPTY
    return True


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is _EMPTY or b is _EMPTY:
        return _EMPTY
    return False


def _xor(a: Any, b: Any) -> Any:
    if a is _EMPTY or b is _EMPTY:
        return _EMPTY
    return a is not b


def _implies(a: Any, b: Any) -> Any:
    if a is False:
        return True
    if a is _EMPTY:
        return True if b is True else _EMPTY
    return b


