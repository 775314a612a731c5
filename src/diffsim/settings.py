"""One frozen settings object per metric: the single source of its config, cache key, repr and overrides.

A metric declares its settings as a frozen dataclass derived from :class:`Settings`. Every field is a
setting with its default, and declares its role once, where it is defined (``dataclasses.field``
metadata, through the helpers below; a plain default is a ``feature`` setting):

* ``feature`` (:func:`setting`): determines the per-image features (in the feature-cache key);
* ``resolved`` (:func:`resolved_field`): resolved against the model (layer names, step -> T); the
  resolved value enters the feature-cache key instead;
* ``runtime`` (:func:`runtime_field`): changes neither features nor scores (batch size, cache folder);
* ``compare_only`` (:func:`compare_field`): changes the scores but not the per-image features (e.g.
  ``similarity``), so it is left out of the feature-cache key;
* ``per_call`` (:func:`per_call_field`): ``embed`` may also take it per call (e.g. ``prompt``); two
  compared feature sets may differ in it.

Independently, ``load=True`` (:func:`load_field`) marks the settings that select the loaded network
(model, revision, device, dtype, variant, adapter weights, compile options...): :meth:`Settings.load_dict`
is the metric's shared-model key, and ``with_settings`` loads another network whenever it changes.
A subclass that changes a field's default re-declares it with the same helper (a test checks roles).

``Settings.create(**kw)`` and ``settings.replace(**kw)`` refuse unknown names with a :class:`ConfigError`
that lists the valid ones (never a bare ``TypeError``); ``validate`` runs on every construction.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import torch

from .errors import ConfigError

S = TypeVar("S", bound="Settings")

ROLE, LOAD = "diffsim_role", "diffsim_load"
FEATURE, RESOLVED, RUNTIME, COMPARE_ONLY, PER_CALL = "feature", "resolved", "runtime", "compare_only", "per_call"
ROLES = (FEATURE, RESOLVED, RUNTIME, COMPARE_ONLY, PER_CALL)


def setting(default: Any = dataclasses.MISSING, *, role: str = FEATURE, load: bool = False, factory: Any = None) -> Any:
    """A settings field with its role (see the module docstring) and whether it selects the loaded network."""
    if role not in ROLES:
        raise ValueError(f"unknown settings role {role!r}")
    meta = {ROLE: role, LOAD: load}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def load_field(default: Any, *, role: str = FEATURE) -> Any:
    """A setting that selects the loaded network (a change loads another one); ``role`` as :func:`setting`."""
    return setting(default, role=role, load=True)


def runtime_field(default: Any, *, load: bool = False) -> Any:
    """A setting that changes neither the features nor the scores."""
    return setting(default, role=RUNTIME, load=load)


def compare_field(default: Any = dataclasses.MISSING, *, factory: Any = None) -> Any:
    """A setting that changes the scores but not the per-image features."""
    return setting(default, role=COMPARE_ONLY, factory=factory)


def per_call_field(default: Any) -> Any:
    """A setting that ``embed`` may also take per call."""
    return setting(default, role=PER_CALL)


def resolved_field(default: Any) -> Any:
    """A feature setting resolved against the model (its resolved value enters the feature key)."""
    return setting(default, role=RESOLVED)


def jsonable(value: Any) -> Any:
    """A JSON-serialisable form of a setting value (paths and dtypes as strings, tuples as lists)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (os.PathLike, torch.device)):
        return str(value)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every metric's settings (subclasses add fields with defaults)."""

    #: groups of settings that say the same thing two ways (e.g. timestep / step): setting one resets the others
    exclusive: ClassVar[tuple[frozenset[str], ...]] = ()

    def __post_init__(self) -> None:
        self.normalise()
        self.validate()

    def normalise(self) -> None:
        """Bring values to one canonical form (e.g. lists to tuples) before validation."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def validate(self) -> None:
        """Check the values; raise :class:`ConfigError` naming the setting and what was expected."""

    @property
    def higher_is_better(self) -> bool:
        """Polarity implied by these settings (a distance returns False)."""
        return True

    # ------------------------------------------------------------------ roles
    @classmethod
    def role_of(cls, name: str) -> str:
        """The role of setting ``name`` (``feature`` unless declared otherwise)."""
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        return str(f.metadata.get(ROLE, FEATURE))

    @classmethod
    def with_role(cls, role: str) -> frozenset[str]:
        """Names of the settings of ``role``."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get(ROLE, FEATURE) == role)

    @classmethod
    def load_names(cls) -> tuple[str, ...]:
        """Names of the settings that select the loaded network, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(LOAD, False))

    @property
    def runtime(self) -> frozenset[str]:
        return self.with_role(RUNTIME)

    @property
    def compare_only(self) -> frozenset[str]:
        return self.with_role(COMPARE_ONLY)

    @property
    def per_call(self) -> frozenset[str]:
        return self.with_role(PER_CALL)

    def load_dict(self) -> dict[str, Any]:
        """The settings that select the loaded network (the metric's shared-model key)."""
        return {n: getattr(self, n) for n in self.load_names()}

    def values(self) -> dict[str, Any]:
        """Every setting's value as given (not made JSON-able): ``type(s)(**s.values()) == s``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    # ------------------------------------------------------------------ names
    @classmethod
    def names(cls) -> list[str]:
        """Every setting's name, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def check_names(cls, names: Any, what: str = "") -> None:
        """Raise :class:`ConfigError` for names that are not settings of this class."""
        valid = cls.names()
        unknown = [n for n in names if n not in valid]
        if unknown:
            hints = [m for n in unknown for m in difflib.get_close_matches(n, valid, n=1, cutoff=0.6)]
            hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
            raise ConfigError(
                f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                f"{' for ' + what if what else ''}{hint}; valid settings: {', '.join(valid)}"
            )

    @classmethod
    def create(cls: type[S], what: str = "", **values: Any) -> S:
        """Settings from keyword values (defaults for the rest); unknown names raise ConfigError."""
        cls.check_names(values, what)
        try:
            return cls(**values)
        except TypeError as exc:  # a value of a type the dataclass cannot take
            raise ConfigError(f"invalid settings{' for ' + what if what else ''}: {exc}") from exc

    def replace(self: S, what: str = "", **changes: Any) -> S:
        """A copy with ``changes`` applied (validated; unknown names raise ConfigError)."""
        self.check_names(changes, what)
        for group in self.exclusive:
            given = group & set(changes)
            if given:
                for other in group - given:
                    changes[other] = self.default(other)
        return dataclasses.replace(self, **changes)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default value of setting ``name``."""
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        raise ConfigError(f"setting {name!r} has no default")

    # ----------------------------------------------------------------- values
    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON-able values."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def feature_dict(self) -> dict[str, Any]:
        """The settings that determine per-image features (no runtime or compare-only ones)."""
        keep = (FEATURE, PER_CALL)
        return {
            f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if self.role_of(f.name) in keep
        }

    def non_default(self) -> dict[str, Any]:
        """Settings that differ from their defaults (for a short ``repr``)."""
        return {n: getattr(self, n) for n in self.names() if jsonable(getattr(self, n)) != jsonable(self.default(n))}
