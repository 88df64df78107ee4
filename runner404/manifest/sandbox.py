"""The Jinja2 side of `${{ … }}` expressions: the bounded sandbox and undefined names that explain
themselves. Imported by interpolate only when a manifest has an expression, so that validating
one without any does not pay for importing Jinja2.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import missing  # the default of an Undefined's obj

from runner404.diagnostics import did_you_mean
from runner404.manifest.interpolate import TOP_LEVEL_NAMES

__all__ = ["ENV", "MAX_RESULT", "Reported", "StrictName", "TemplateError", "Undefined"]  # for interpolate


class StrictName(StrictUndefined):
    """StrictUndefined whose message names what is available."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is not missing and not isinstance(self._undefined_obj, Undefined):
            return f"{type(self._undefined_obj).__name__} value has no attribute '{self._undefined_name}'"
        name = self._undefined_name
        return (f"undefined name '{name}'{did_you_mean(name, TOP_LEVEL_NAMES)}; "
                f"names available: {', '.join(TOP_LEVEL_NAMES)}")


class Reported(StrictName):
    """A prompt set whose failure was reported at the set: expressions using it fail silently."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        from runner404.manifest.interpolate import _AlreadyReported

        raise _AlreadyReported(self._undefined_hint or "")


MAX_RESULT = 1_000_000  # items or characters an operator may produce: values, not data sets


class _BoundedSandbox(SandboxedEnvironment):
    """The sandbox, plus a bound on what `*` and `**` may produce (`'a' * 10**9`)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int | float) and isinstance(left, int | float) \
                and abs(right) > 64 and abs(left) > 1:
            raise SecurityError(f"{left} ** {right} is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_RESULT:
                    raise SecurityError(f"the result would have {len(seq) * times} items (limit {MAX_RESULT})")
        return super().call_binop(context, operator, left, right)


ENV = _BoundedSandbox(undefined=StrictName, autoescape=False)
