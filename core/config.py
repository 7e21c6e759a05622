"""The one config mechanism: frozen pydantic models whose fields carry their type, bounds, default and help.

Every offline and index config derives from :class:`FrozenConfig`. A bad value raises :class:`ConfigError`,
one line that starts with the path of the field (``trainer.lr: ...``, ``views[1]: ...``,
``behavior_weights['buy']: ...``); the CLI reads each option's help and default from the field
(:func:`option_help`), and TOML files are read into the same models (``core.config_files``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticUndefined

#: An item of a tuple field that must be a count >= 1 (``ks``, layer sizes).
PositiveInt = Annotated[int, Field(ge=1)]


class ConfigError(ValueError):
    """A config field has a bad value; ``field`` is its path and the message reads ``path: problem``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.problem = message


class FrozenConfig(BaseModel):
    """Base of every config: immutable, unknown fields refused, numbers not coerced from strings or bools
    (containers from JSON and TOML are still accepted as lists; see the fields marked ``strict=False``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(type(self), exc) from None

    @model_validator(mode="after")
    def _read_only_mappings(self) -> Self:
        # Frozen means the mapping fields too (weights, behaviour maps): pydantic validates them into
        # dicts, which stay mutable; each becomes a read-only view.
        for name, value in self.__dict__.items():
            if isinstance(value, dict):
                self.__dict__[name] = MappingProxyType(value)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        # As a frozen dataclass does (pydantic's own refusal is a ValidationError).
        raise AttributeError(f"{type(self).__name__} is frozen: use .replace({name}=...)")

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied; a mapping given for a nested config changes only
        the fields it names (``replace(trainer={"lr": 0.1})`` keeps the other trainer settings)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        for name, change in changes.items():
            current = values.get(name)
            if isinstance(current, FrozenConfig) and isinstance(change, Mapping):
                try:
                    change = current.replace(**change)
                except ConfigError as exc:
                    raise ConfigError(f"{name}.{exc.field}", exc.problem) from None
            values[name] = change
        return type(self)(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (manifests, checkpoints, TOML): tuples as lists, mappings as dicts."""
        # Mapping fields hold read-only MappingProxyType values, which pydantic's serializer warns about.
        return _plain(self.model_dump(warnings=False))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _config_error(model: type[BaseModel], exc: ValidationError) -> ConfigError:
    """The first error of ``exc`` as one :class:`ConfigError` naming the field's path."""
    err = exc.errors()[0]
    path, owner = _path(model, err["loc"])
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, ConfigError):  # raised by a model validator with its own field path
        inner = original.field
        joined = f"{path}.{inner}" if path and not inner.startswith("[") else f"{path}{inner}"
        return ConfigError(joined, original.problem)
    if isinstance(original, ValueError):  # raised by a field validator: the location is the field
        return ConfigError(path or model.__name__, str(original))
    message = err["msg"]
    if err["type"] not in ("missing", "extra_forbidden"):
        message += f", got {err.get('input')!r}"
    if err["type"] == "extra_forbidden" and owner is not None:
        message = f"unknown field; valid: {', '.join(owner.model_fields)}"
    return ConfigError(path or model.__name__, message)


def _path(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None]:
    """``('trainer', 'lr')`` -> ``trainer.lr``; ``('views', 1)`` -> ``views[1]``; mapping keys in ``['k']``;
    with the config model that holds the last element (None for an item of a tuple or mapping)."""
    out = ""
    current: Any = model
    owner: type[BaseModel] | None = None
    for part in loc:
        owner = current if isinstance(current, type) and issubclass(current, BaseModel) else None
        if isinstance(part, int):
            out += f"[{part}]"
            current = None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            out += f".{part}" if out else part
            field = current.model_fields.get(part)
            current = _model_of(field.annotation) if field is not None else None
        else:
            out += f"[{part!r}]"
            current = None
    return out, owner


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config model inside ``annotation`` (``TrainerConfig``, ``TrainerConfig | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None


def default_of(model: type[BaseModel], name: str) -> Any:
    """The default of field ``name`` of ``model``."""
    info = model.model_fields[name]
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def describe(model: type[BaseModel], name: str) -> str:
    """The help text of field ``name`` (for CLI options that show their own default)."""
    return model.model_fields[name].description or name


def option_help(
    model: type[BaseModel], name: str, *, default: Any = PydanticUndefined, note: str = ""
) -> str:
    """CLI help of field ``name``: its description and its default. ``default`` overrides the model's
    (for a nested config whose defaults differ, e.g. M2GRL's trainer settings); ``note`` replaces the
    shown default by words (``"from the preset"``)."""
    info = model.model_fields[name]
    if note:
        return f"{info.description} (default: {note})"
    value = default_of(model, name) if default is PydanticUndefined else default
    shown = "none" if value is None else ",".join(map(str, value)) if isinstance(value, tuple) else value
    return f"{info.description} (default: {shown})"
