"""Typed immutable records that do not import ``typing`` at run time.

Importing typing costs ~4 ms, a tenth of a hook's 40 ms budget. To a type
checker ``Record`` is ``typing.NamedTuple``, so records are checked exactly like
NamedTuples; at run time the same class statement builds a
``collections.namedtuple`` (fields from the annotations, defaults from the
class body) and keeps the class's methods and properties.

    class Probe(Record):
        status: str
        detail: str = ""
"""

from __future__ import annotations

import collections

__all__ = ["Record"]

# mypy treats a name TYPE_CHECKING as true whatever it is bound to; at run time
# this avoids importing typing just to read typing.TYPE_CHECKING.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:

    class _RecordMeta(type):
        """Turn ``class X(Record)`` into a namedtuple subclass with X's methods."""

        def __new__(mcls, name, bases, namespace):
            if namespace.get("_is_record_base"):
                return super().__new__(mcls, name, bases, namespace)
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            base = collections.namedtuple(
                name, fields, defaults=defaults or None, module=namespace.get("__module__")
            )
            skip = {*fields, "__annotations__", "__dict__", "__weakref__"}
            body = {key: value for key, value in namespace.items() if key not in skip}
            body["__slots__"] = ()
            return type.__new__(type, name, (base,), body)

    class Record(metaclass=_RecordMeta):
        """Base of typed records (see the module docstring)."""

        _is_record_base = True
