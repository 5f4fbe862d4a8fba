"""A small name -> builder registry (after torchvision ``models/_api.py``).

Every name a suite may use in TOML (losses, exit policies, models, datasets)
resolves through one of these. A duplicate registration or an unknown name
raises and lists the names that are known.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from cascade.errors import UserError

T = TypeVar("T")


class UnknownNameError(KeyError, UserError):
    """Raised for a name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0])


class DuplicateNameError(ValueError, UserError):
    """A second registration of a name: says who holds it and, for a built-in, suggests a rename."""


#: Every registry made, so that a failed plugin import can be rolled back everywhere (:func:`rollback_on_error`).
_ALL: list[Registry[Any]] = []


def _owner(obj: object) -> str:
    """The module (and name) that defined ``obj``, for messages."""
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None)
    return f"{module}.{name}" if name else module


def _built_in(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return module.split(".")[0] in ("cascade", "bench")


@contextlib.contextmanager
def rollback_on_error() -> Iterator[None]:
    """Undo every registration made inside the block when it raises (SystemExit included): a plugin whose
    import fails leaves nothing half-registered, so importing it again names its real error."""
    saved = [(r, dict(r._items), dict(r._prefixes)) for r in _ALL]
    try:
        yield
    except BaseException:
        for registry, items, prefixes in saved:
            registry._items, registry._prefixes = items, prefixes
        raise


class Registry(Generic[T]):
    """Maps names to objects (usually builders) of one kind.

    Args:
        kind: what the registry holds, used in error messages ("loss", "dataset").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}
        _ALL.append(self)

    def register_prefix(self, prefix: str, resolve: Callable[[str], T]) -> None:
        """Resolve every name ``prefix<rest>`` with ``resolve(rest)`` (e.g. ``torchvision:resnet18``).

        ``resolve`` raises ``UnknownNameError`` (or ``KeyError``) for a ``rest`` it does not know.
        """
        if prefix in self._prefixes:
            raise ValueError(f"{self.kind} prefix {prefix!r} is already registered")
        self._prefixes[prefix] = resolve

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise DuplicateNameError(self.duplicate_message(name, obj))
            self._items[name] = obj
            return obj

        return deco

    def duplicate_message(self, name: str, new: object) -> str:
        """Why ``name`` cannot be registered again: who holds it; a built-in name gets a rename suggestion."""
        held = self._items[name]
        suggestion = next(f"{name}-{n}" for n in ("own", *range(2, 1000)) if f"{name}-{n}" not in self._items)
        if _built_in(held) and not _built_in(new):
            return (
                f"{self.kind} {name!r} is built in ({_owner(held)}); {_owner(new)} cannot register it again: "
                f"rename yours (e.g. {suggestion!r}) and use that name in the suite, or use the built-in one"
            )
        return (
            f"{self.kind} {name!r} is already registered (by {_owner(held)}); register {_owner(new)} under "
            f"another name, e.g. {suggestion!r}"
        )

    def unregister(self, name: str) -> T:
        """Remove ``name`` (for tests and plugins that register temporarily); returns what was registered."""
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items.pop(name)

    def get(self, name: str) -> T:
        """Return the object registered under ``name`` or raise listing the known names."""
        if name in self._items:
            return self._items[name]
        for prefix, resolve in self._prefixes.items():
            if name.startswith(prefix):
                try:
                    return resolve(name[len(prefix) :])
                except KeyError as e:
                    raise UnknownNameError(f"unknown {self.kind} {name!r}: {e.args[0] if e.args else e}") from None
        raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = [*sorted(self._items), *(f"{p}<name>" for p in self._prefixes)]
        return f"unknown {self.kind} {name!r}{hint}; known: {', '.join(known)}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name in self._items:
            return True
        if not isinstance(name, str) or not any(name.startswith(p) for p in self._prefixes):
            return False
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
