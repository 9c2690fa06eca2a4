"""One key of ``settings.CLICKATELL``: read, validated and documented in one place.

An :class:`Option` is a descriptor on :class:`~.options.ClickatellSettings`: every
read goes back to ``settings.CLICKATELL`` (so ``override_settings`` works
everywhere) and parses the value with its :class:`~.values.Kind`.  The same
object carries what the settings reference shows -- type, bounds, default, one
paragraph and an example -- so README and docs are generated from the code
that enforces them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from django.conf import settings

from .errors import AccountKey, Missing, SettingError, WrongType, describe
from .values import Kind

if TYPE_CHECKING:
    from .options import ClickatellSettings

T = TypeVar("T")
REQUIRED: Any = object()

#: Read from each account's own dict (the top level for ``"default"``), never inherited.
ACCOUNT = "account"
#: Read from the top level of ``CLICKATELL`` only: one value for the whole process.
PROCESS = "process"


def user_settings() -> Mapping[str, Any]:
    value = getattr(settings, "CLICKATELL", {})
    if not isinstance(value, Mapping):
        raise WrongType(f"settings.CLICKATELL must be a dict, not {type(value).__name__}.")
    return value


def literal(value: object) -> str:
    """A default as it would be written in a settings file: ``"text"``, ``(5.0, 15.0)``."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(map(literal, value)) + ")"
    return repr(value)


class Derived:
    """A default computed from the other settings (a lease sized from the timeouts).

    *doc* is how the reference states it, e.g. "``30.0``, or 1.5 x one request if longer".
    """

    def __init__(self, compute: Callable[[ClickatellSettings], Any], doc: str) -> None:
        self.compute = compute
        self.doc = doc


class Option(Generic[T]):
    """One key of ``settings.CLICKATELL``, validated on every read, and its reference entry.

    *default* is written as in a settings file and parsed once when the class is
    built (a bad default fails at import); a :class:`Derived` default is computed
    on each read; no default makes the key required.  *doc* is the one paragraph
    README and docs show, *example* a Python expression.  *relation* checks the
    value against other settings (a lease against the work it guards) and
    raises :class:`~.errors.LeaseTooShort`.

    *scope* says where the key is read: :data:`ACCOUNT` (each account's own
    dict) or :data:`PROCESS` (the top level, for every account).  *required_for*
    names the backends that need a required key (the credentials of one API);
    for any other backend the key may be left out and reads as *blank*.
    """

    def __init__(
        self,
        kind: Kind[T],
        default: object = REQUIRED,
        *,
        doc: str,
        example: str,
        scope: str = PROCESS,
        required_for: tuple[str, ...] = (),
        blank: object = None,
        relation: Callable[[ClickatellSettings, str, T], None] | None = None,
    ) -> None:
        assert scope in (ACCOUNT, PROCESS), scope
        assert not required_for or default is REQUIRED, "required_for needs a required key"
        self.kind = kind
        self.default = default
        self.doc = doc
        self.example = example
        self.scope = scope
        self.required_for = required_for
        self.blank = blank
        self.relation = relation
        self.key = ""
        self._parsed_default: object = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name.upper()
        if not self.required and not isinstance(self.default, Derived):
            self._parsed_default = self.kind(self.key, self.default)

    @property
    def required(self) -> bool:
        """Required (for some backends at least): no default."""
        return self.default is REQUIRED

    def required_in(self, instance: ClickatellSettings) -> bool:
        """Whether *instance*'s account must set this key (its backend needs it)."""
        if not self.required:
            return False
        return not self.required_for or instance.backend in self.required_for

    @property
    def required_text(self) -> str:
        """ "required", or for which backends, as the reference states it."""
        if not self.required_for:
            return "required"
        return "required for " + ", ".join(f"``{name}``" for name in self.required_for)

    @property
    def default_text(self) -> str:
        """The default as the reference states it ("" for a required key)."""
        if self.required:
            return ""
        if isinstance(self.default, Derived):
            return self.default.doc
        return f"``{literal(self.default)}``"

    @overload
    def __get__(self, instance: None, owner: type) -> Option[T]: ...
    @overload
    def __get__(self, instance: ClickatellSettings, owner: type) -> T: ...
    def __get__(self, instance: ClickatellSettings | None, owner: type) -> Option[T] | T:
        if instance is None:
            return self
        instance = self.reader(instance)
        value = self.value(instance)
        if self.relation is not None:
            self.relation(instance, self.key, value)
        return value

    def reader(self, instance: ClickatellSettings) -> ClickatellSettings:
        """The settings this key is read from: a process-wide key from the top level."""
        return instance.process if self.scope == PROCESS else instance

    def value(self, instance: ClickatellSettings) -> T:
        """The parsed value, without the relation to other settings.

        A bad value is raised afresh from this frame: the frames below hold the
        whole ``CLICKATELL`` dict, passwords included, as local variables, and
        Django's DEBUG error page shows every frame's locals.
        """
        try:
            return self._read(self.reader(instance))
        except SettingError as exc:
            error = exc
        raise error.with_traceback(None)

    def _read(self, instance: ClickatellSettings) -> T:
        key = instance.key(self.key)
        raw = instance.account_values().get(self.key)
        if raw is not None:
            return self.kind(key, raw)
        if self.required_in(instance):
            needed = f" (the {instance.backend} backend needs it)" if self.required_for else ""
            where = "the account's dict" if isinstance(key, AccountKey) else "the CLICKATELL dict"
            raise Missing(
                f"{describe(key)} is missing{needed}: add it to {where} in your settings."
            )
        if self.required:
            return cast(T, self.blank)
        if isinstance(self.default, Derived):
            return cast(T, self.default.compute(instance))
        return cast(T, self._parsed_default)
