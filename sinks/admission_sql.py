"""The contract's admission in ClickHouse: raw event lines to the rows of the ``events`` table.

Validating each event in Python (pydantic, then the cells and measures) costs about 10 µs,
which caps a history load at about 15k events/s on two cores (docs/bench.md, tenth pass).
Here ClickHouse does it in C++: :func:`accepted_select` reads one JSON line per row and gives
the ``events`` row the worker's path would store (``streams.rollup.accepted_row`` through
``sinks.landing``), and whether the line is *surely valid*.

It is deliberately partial. It recognises the plain shape producers write: one object, no
escapes, no nulls, no duplicate keys, timestamps ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)``
in range. Any other line is *unsure*, not refused: the Python admission
(``hotspots.contract``) then accepts it or gives its reason, as for any record. So this SQL
needs to be sound, never complete: a line it passes must be one Python accepts, with the
same row. tests/unit/test_admission_sql.py holds it to that, column by column, over every
kind, random values and a corpus of invalid lines.

The field rules are read from the models' JSON Schema, so a new kind or field is covered,
and a construct this module does not know (or a new field validator) stops it loudly
(:func:`field_checks`). The measures per kind are written out below, as in ``measures_of``.
"""

from __future__ import annotations

from typing import Any

from hotspots.contract import (
    EARLIEST,
    MAX_RECORD_BYTES,
    MEASURES,
    MODELS,
    Admission,
)
from hotspots.geo import RESOLUTIONS
from hotspots.periods import LONDON

# The field validators whose rules are written out here, by hand, not read from the schema.
KNOWN_VALIDATORS = frozenset({"_exact_version", "_to_utc", "_reject_naive", "_whole_pence"})
# Settings for every statement that runs accepted_select. geoToH3's argument order changed in
# ClickHouse 25.5, so it is named. Short-circuit evaluation re-ran the parse under each AND of
# the checks (1,300 µs a line instead of 7); off, every function sees every row, so each one
# is given values it cannot fail on (the *OrZero casts, the guards below). The analyzer's
# and-compare-chain rewrite, quadratic in the chain, took 0.5 of the 0.8 s of planning the
# checks' long AND; it only infers more comparisons, so off it changes no result.
CELL_SETTINGS = {"geotoh3_argument_order": "lat_lon", "short_circuit_function_evaluation": "disable",
                 "optimize_and_compare_chain": 0}

_MODELS = MODELS
_LATEST_YEAR = 2200  # past every accepted instant (now + max_future): keeps DateTime64 in range


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _raw(name: str) -> str:
    """A field's raw JSON text, '' when the line has no such key."""
    return f"r_{name}"


def _string(raw: str) -> str:
    """A raw JSON string's text: the line has no backslash, so nothing is escaped."""
    return f"substring({raw}, 2, length({raw}) - 2)"


# A JSON number with at most 24 characters, as toFloat64 reads it exactly; an integer with at
# most 9 digits (every bound in the contract is far below that).
_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
_INTEGER = r"^-?(0|[1-9][0-9]{0,8})$"


def _rule(name: str, spec: dict[str, Any]) -> str:
    """One present field's check on its raw JSON text, from its JSON Schema."""
    if "anyOf" in spec:  # X | None: a null is left to Python (unsure), so check X alone
        branches = [s for s in spec["anyOf"] if s.get("type") != "null"]
        if len(branches) != 1 or len(spec["anyOf"]) != 2:
            raise NotImplementedError(f"{name}: {spec}")
        spec = branches[0]
    raw = _raw(name)
    known = {"type", "title", "default", "description"}
    kind = spec.get("type")
    if kind == "string" and spec.get("format") == "date-time":
        return "at_ok"  # the timestamp's own checks: see _instant
    if kind == "string":
        # ClickHouse re-writes the raw text of some characters as escapes (U+2028 as \u2028):
        # a backslash there, where the line has none, leaves the line to Python.
        checks = [f"startsWith({raw}, '\"')", f"position({raw}, '\\\\') = 0"]
        text = _string(raw)
        if "const" in spec:
            checks.append(f"{text} = {_quote(spec['const'])}")
        if "enum" in spec:
            checks.append(f"{text} IN ({', '.join(_quote(v) for v in spec['enum'])})")
        if "minLength" in spec or "maxLength" in spec:
            checks.append(f"lengthUTF8({text}) BETWEEN {spec.get('minLength', 0)} "
                          f"AND {spec.get('maxLength', MAX_RECORD_BYTES)}")
        if "pattern" in spec:
            checks.append(f"match({text}, {_quote(spec['pattern'])})")
        known |= {"const", "enum", "minLength", "maxLength", "pattern"}
    elif kind == "integer":  # strict: a JSON integer, not 1.0 and not true
        # The raw value is re-written by ClickHouse (1.0 becomes 1): the line's own text is
        # checked too, for every integer field at once (_integers_as_written).
        checks = [f"match({raw}, {_quote(_INTEGER)})"]
        if "const" in spec:
            checks.append(f"toInt64OrZero({raw}) = {int(spec['const'])}")
        if "minimum" in spec or "maximum" in spec:
            checks.append(f"toInt64OrZero({raw}) BETWEEN {int(spec['minimum'])} AND {int(spec['maximum'])}")
        known |= {"const", "minimum", "maximum"}
    elif kind == "number":  # strict: a JSON number (integer or not), not true
        checks = [f"length({raw}) <= 24", f"match({raw}, {_quote(_NUMBER)})"]
        if "minimum" in spec or "maximum" in spec:
            checks.append(f"toFloat64OrZero({raw}) BETWEEN {spec['minimum']} AND {spec['maximum']}")
        known |= {"minimum", "maximum"}
    elif kind == "boolean":
        checks = [f"{raw} IN ('true', 'false')"]
    else:
        raise NotImplementedError(f"{name}: {spec}")
    if set(spec) - known:
        raise NotImplementedError(f"{name}: {sorted(set(spec) - known)} in {spec}")
    # Checks run on every row, valid or not: guarded so that a bad value is false, never an error.
    return " AND ".join(checks)


def _fields() -> dict[str, dict[str, Any]]:
    """Every field name of the contract: {kind: its JSON Schema} for each kind that has it."""
    out: dict[str, dict[str, Any]] = {}
    for model in _MODELS:
        unknown = set(model.__pydantic_decorators__.field_validators) - KNOWN_VALIDATORS
        if unknown:
            raise NotImplementedError(f"{model.__name__}: field validators {sorted(unknown)}")
        kind = model.model_fields["kind"].default
        for name, spec in model.model_json_schema()["properties"].items():
            out.setdefault(name, {})[kind] = spec
    return out


def _integers_as_written(fields: dict[str, dict[str, Any]]) -> str | None:
    """No integer field (of any kind, among ``fields``) is written with a fraction or an
    exponent (1.0, 1e0), which ClickHouse's raw value would show as 1. One pass over the line
    for all of them: a line with no backslash holds no quote inside a string, so ``"name"``
    then ``:`` is that key, and a JSON number with ``.``, ``e`` or ``E`` after its digits is
    not an integer. Every whitespace JSON allows is matched, or a float could pass."""
    def is_integer(spec: dict[str, Any]) -> bool:
        return spec.get("type") == "integer" or any(is_integer(s) for s in spec.get("anyOf", ()))
    names = [name for name, by_kind in fields.items() if any(map(is_integer, by_kind.values()))]
    if not names:
        return None
    space = r"[ \t\r\n]*"
    pattern = f'"({"|".join(names)})"{space}:{space}-?[0-9]+[.eE]'
    return f"NOT match(line, {_quote(pattern)})"


def _kind_masks() -> tuple[list[str], list[int], list[int]]:
    """The kinds, and for each the bits of the fields it must not have and must have (a
    field's bit is its place in _fields())."""
    names = list(_fields())
    kinds, forbidden, required = [], [], []
    for model in _MODELS:
        schema = model.model_json_schema()
        allowed = {names.index(n) for n in schema["properties"]}
        must = {names.index(n) for n in {*schema.get("required", ()), "kind"}}  # kind: the tag
        kinds.append(model.model_fields["kind"].default)
        forbidden.append(sum(1 << i for i in range(len(names)) if i not in allowed))
        required.append(sum(1 << i for i in must))
    return kinds, forbidden, required


def field_checks() -> str:
    """Every present field passes its kind's rule (the kind's shape is checked by masks)."""
    checks = []
    fields = _fields()
    for name, by_kind in fields.items():
        if name == "kind":
            continue  # known kinds only: the masks
        rules = {kind: _rule(name, spec) for kind, spec in by_kind.items()}
        if len(set(rules.values())) == 1:
            rule = next(iter(rules.values()))
        else:  # e.g. a warrant's outcome is one of a list, a stop and search's is free text
            rule = "multiIf(" + ", ".join(f"kind = {_quote(k)}, {r}" for k, r in rules.items()) + ", false)"
        checks.append(f"({_raw(name)} = '' OR ({rule}))")
    if integers := _integers_as_written(fields):
        checks.append(integers)
    if any("_whole_pence" in m.__pydantic_decorators__.field_validators for m in _MODELS):
        checks.append("abs(cash * 100 - round(cash * 100)) <= 1e-6")  # Seizure._whole_pence
    return " AND ".join(checks)


def _measures() -> dict[str, str]:
    """Each of MEASURES for one line, as ``measures_of`` computes it (absent fields at their
    defaults). Python's round() and ClickHouse's round() on a Float64 both round half to even."""
    people = "kind IN ('safeguarding', 'gang_injunction', 'risk_order')"
    out = {
        "count": "toUInt64(1)",
        "charged": f"toUInt64(kind = 'arrest' AND {_raw('charged')} = 'true')",
        "executed": f"toUInt64(kind = 'warrant' AND {_raw('executed')} = 'true')",
        "weapons": f"if(kind = 'seizure', toUInt64OrZero({_raw('weapons_count')}), 0)",
        "drugs_mg": "if(kind = 'seizure', toUInt64(greatest(round(drugs * 1000), 0)), 0)",
        "cash_pence": "if(kind = 'seizure', toUInt64(greatest(round(cash * 100), 0)), 0)",
        "sentence_months": f"if(kind = 'court_outcome', toUInt64OrZero({_raw('sentence_months')}), 0)",
        "people": f"if({people}, if({_raw('people')} = '', 1, toUInt64OrZero({_raw('people')})), 0)",
    }
    assert tuple(out) == MEASURES, "a measure was added to the contract: add it here"
    return out


def _instant() -> list[str]:
    """The timestamp's parts and instant (UTC, microseconds), and ``at_ok``: the pattern
    matched, each part is in range, and the instant is after EARLIEST."""
    pattern = (r'^"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?'
               r'(Z|[+-][0-9]{2}:[0-9]{2})"$')
    parts = {"y": (2, 4), "mo": (7, 2), "d": (10, 2), "h": (13, 2), "mi": (16, 2), "s": (19, 2)}
    ok = (f"at_shape AND at_y BETWEEN 1970 AND {_LATEST_YEAR} AND at_mo BETWEEN 1 AND 12 "
          "AND at_d BETWEEN 1 AND toDayOfMonth(toLastDayOfMonth(makeDate("
          f"least(greatest(at_y, 1970), {_LATEST_YEAR}), least(greatest(at_mo, 1), 12), 1))) "
          "AND at_h <= 23 AND at_mi <= 59 AND at_s <= 59 AND at_off_h <= 18 AND at_off_m <= 59")
    safe = {"y": 2000, "mo": 1, "d": 1, "h": 0, "mi": 0, "s": 0}  # for a row that is not ok
    made = ", ".join(f"if(at_parts_ok, at_{p}, {v})" for p, v in safe.items())
    return [
        f"{_raw('occurred_at')} AS at_raw",
        f"match(at_raw, {_quote(pattern)}) AS at_shape",
        "if(at_shape, at_raw, '\"2000-01-01T00:00:00Z\"') AS at_text",
        *(f"toUInt16OrZero(substring(at_text, {i}, {n})) AS at_{p}" for p, (i, n) in parts.items()),
        "substring(at_text, 21, length(at_text) - 21) AS at_tail",  # [.ffffff](Z|±HH:MM)
        "if(endsWith(at_tail, 'Z'), '', right(at_tail, 6)) AS at_off",
        "toUInt16OrZero(substring(at_off, 2, 2)) AS at_off_h",
        "toUInt16OrZero(substring(at_off, 5, 2)) AS at_off_m",
        "if(startsWith(at_tail, '.'), substring(at_tail, 2, length(at_tail) - 1 - "
        "if(at_off = '', 1, 6)), '') AS at_frac",
        f"{ok} AS at_parts_ok",
        f"makeDateTime64({made}, if(at_parts_ok, toUInt32OrZero(rightPad(at_frac, 6, '0')), 0), 6, 'UTC') "
        "- toIntervalSecond(if(at_parts_ok AND at_off != '', if(startsWith(at_off, '-'), -1, 1) "
        "* (at_off_h * 3600 + at_off_m * 60), 0)) AS at",
        f"at_parts_ok AND at >= toDateTime64({_quote(EARLIEST.strftime('%Y-%m-%d %H:%M:%S'))}, 6, 'UTC') "
        "AS at_ok",
    ]


def accepted_select(admission: Admission, source: str, passing: str = "") -> str:
    """SELECT the ``events`` columns of each ``line`` of ``source`` (a subquery), then
    ``sure``: 1 for a line Python's admission would accept with this row, 0 for one it must
    decide (see the module's docstring). ``passing`` names more columns of ``source`` to
    keep, e.g. a record's place for the dead letter of a line that is not sure.

    Layered subqueries, each naming its columns: ClickHouse then computes each value once.
    The future check reads the store's clock (now64), as the worker reads its own.
    """
    keep = f"{passing}, " if passing else ""
    names = list(_fields())
    kinds, forbidden, required = _kind_masks()
    min_lon, min_lat, max_lon, max_lat = admission.area
    shaped = (f"length(line) <= {MAX_RECORD_BYTES} AND startsWith(line, '{{') "
              "AND position(line, '\\\\') = 0 AND isValidUTF8(line) AND isValidJSON(line)")
    parsed = (f"SELECT {keep}line, {shaped} AS shaped, "
              f"JSONExtractKeysAndValuesRaw(if(shaped, line, '{{}}')) AS kv FROM ({source})")
    fields = ", ".join(f"kv.2[indexOf(kv.1, {_quote(n)})] AS {_raw(n)}" for n in names)
    present = " + ".join(f"bitShiftLeft(toUInt64({_raw(n)} != ''), {i})" for i, n in enumerate(names))
    raw = (f"SELECT {keep}line, shaped, length(kv.1) = length(arrayDistinct(kv.1)) "
           f"AND length(kv.1) = {' + '.join(f'({_raw(n)} != {chr(39)}{chr(39)})' for n in names)} AS known, "
           f"{present} AS mask, {fields} FROM ({parsed})")
    kinds_sql = f"[{', '.join(_quote(k) for k in kinds)}]"
    derived = [
        f"if(startsWith({_raw('kind')}, '\"'), {_string(_raw('kind'))}, '') AS kind",
        f"bitAnd(mask, transform(kind, {kinds_sql}, {list(forbidden)}, toUInt64(-1))) = 0 "
        f"AND bitAnd(mask, transform(kind, {kinds_sql}, {list(required)}, toUInt64(0))) "
        f"= transform(kind, {kinds_sql}, {list(required)}, toUInt64(1)) AS kind_shape",
        *_instant(),
        # 0 for a value that is no number: the field's own rule then fails the line.
        f"toFloat64OrZero({_raw('lat')}) AS lat",
        f"toFloat64OrZero({_raw('lon')}) AS lon",
        # Clamped far outside their bounds, so that the measures' casts see sane numbers on
        # every row; a sure line is inside the bounds, where the clamp changes nothing.
        *(f"if(kind = 'seizure', least(greatest(toFloat64OrZero({_raw(field)}), -1), 1e12), 0) AS {alias}"
          for field, alias in (("drugs_grams", "drugs"), ("cash_gbp", "cash"))),
    ]
    checked = (f"SELECT *, shaped AND known AND kind_shape AND {field_checks()} "
               f"AND at <= now64(6, 'UTC') + toIntervalSecond({int(admission.max_future.total_seconds())}) "
               f"AND lon BETWEEN {min_lon} AND {max_lon} AND lat BETWEEN {min_lat} AND {max_lat} AS sure "
               f"FROM (SELECT *, {', '.join(derived)} FROM ({raw}))")
    london = _quote(LONDON.key)
    # The finest cell, and its ancestors (as hotspots.geo.cells_of: H3 cells do not nest
    # exactly, so a coarser cell is the parent, not the cell holding the point). A line that
    # is not sure gets (0, 0), which geoToH3 takes: its own coordinates may be out of range.
    finest = max(RESOLUTIONS)
    cells = [f"geoToH3(if(sure, lat, 0), if(sure, lon, 0), {finest}) AS cell{finest}",
             *(f"h3ToParent(cell{finest}, {r}) AS cell{r}" for r in sorted(RESOLUTIONS, reverse=True)[1:])]
    columns = [
        f"{_string(_raw('event_id'))} AS event_id",
        "kind",
        "toDateTime64(at, 3, 'UTC') AS occurred_at",
        f"if({_raw('time_precision')} = '', 'instant', {_string(_raw('time_precision'))}) AS time_precision",
        f"toMonday(at, {london}) AS week_start",
        f"toStartOfMonth(at, {london}) AS month_start",
        "lat", "lon",
        f"{_string(_raw('force'))} AS force",
        f"if({_raw('operation')} = '', '', {_string(_raw('operation'))}) AS operation",
        *cells,
        *(f"if(sure, {expr}, 0) AS {name}" for name, expr in _measures().items()),
        "line AS payload",
    ]
    return f"SELECT {keep}{', '.join(columns)}, sure FROM ({checked})"
