"""Deprecations, one way (issue 25: one spelling per idea, the old one accepted with a warning): ``deprecated``
warns ``DeprecationWarning`` naming the fix, ``renamed_kwargs`` keeps a renamed keyword argument working,
``renamed_fields`` a renamed dataclass field (its constructor keyword).
Python hides ``DeprecationWarning`` outside ``__main__`` by default; Jupyter and pytest show it."""
from __future__ import annotations

import functools
import warnings
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def deprecated(what: str, fix: str, stacklevel: int = 2) -> None:
    """Warn ``DeprecationWarning``: ``"<what> is deprecated: <fix>"``. ``stacklevel`` as in
    ``warnings.warn`` (2: the caller of the function that calls ``deprecated``)."""
    warnings.warn(f"{what} is deprecated: {fix}", DeprecationWarning, stacklevel=stacklevel + 1)


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: ``@renamed_kwargs(batch="batch_size")`` accepts the old keyword ``batch=`` of the decorated
    function, warns ``DeprecationWarning`` naming the new one, and passes the value on as ``batch_size=`` (so
    the result is that of the new spelling, bit for bit). Giving both spellings raises ``TypeError``.
    Positional calls are unaffected (a rename keeps the argument's position)."""

    def wrap(fn: F) -> F:
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{name}() got both {old}= (deprecated) and {new}=; pass only {new}=")
                    deprecated(f"{name}({old}=...)", f"use {new}= (the same value; {old}= will be removed)",
                               stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        inner.__deprecated_kwargs__ = dict(renames)  # type: ignore[attr-defined]
        return inner  # type: ignore[return-value]

    return wrap


def renamed_fields(**renames: str) -> Callable[[type], type]:
    """Class decorator, above ``@dataclass``: ``@renamed_fields(vae_batch="vae_batch_size")`` lets the constructor
    accept the old field name as a keyword (``renamed_kwargs`` on ``__init__``: a ``DeprecationWarning`` naming the
    new field, the same object as the new spelling). A dataclass subclass generates its own ``__init__``, so it
    carries the decorator too."""

    def wrap(cls: type) -> type:
        cls.__init__ = renamed_kwargs(**renames)(cls.__init__)  # type: ignore[misc]
        return cls

    return wrap
