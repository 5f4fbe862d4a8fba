"""A small name -> builder registry (after torchvision ``models/_api.py``).

Every name a suite may use in TOML (losses, exit policies, models, datasets)
resolves through one of these. A duplicate registration or an unknown name
raises and lists the names that are known.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from cascade.errors import UserError

T = TypeVar("T")


class UnknownNameError(KeyError, UserError):
    """Raised for a name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to objects (usually builders) of one kind.

    Args:
        kind: what the registry holds, used in error messages ("loss", "dataset").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}

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
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

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
