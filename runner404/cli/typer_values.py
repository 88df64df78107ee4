"""Command-line values converted without pydantic, so that a command does not pay for importing it.

typer 0.29 converts every parameter value through a pydantic TypeAdapter, built on first use, and
importing pydantic costs about 70 ms: more than the rest of `404-run validate`. Our commands only
take str, int, float, Path, Enum and lists of them, whose conversion from a command-line string is
trivial. `install()` swaps typer's factory of per-parameter converters (one module-level name,
`typer.core.build_runtime_param`) for one that converts those values itself, with typer's own
helpers for paths and choices, and hands anything else to typer's converter unchanged: other
types, values that do not convert cleanly (so error messages stay typer's) and out-of-range
numbers. If typer's internals change shape, `install()` does nothing and typer works as before,
only slower; pyproject pins typer to 0.29.x.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

_INT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only; anything else goes to typer
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


class _Unhandled(Exception):
    """The value is not one we convert; typer's converter takes it."""


def install() -> None:
    try:
        from typer import core
        from typer._coercion import RuntimeParam
        from typer._param_types import coerce_cli_choice, coerce_cli_path
    except ImportError:
        return
    typer_factory = getattr(core, "build_runtime_param", None)
    if typer_factory is None or getattr(typer_factory, "_runner404", False):
        return

    def leaf(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
        if getattr(info, "parser", None) is not None:
            raise _Unhandled
        if annotation is str and isinstance(value, str):
            return value
        if annotation in (int, float):
            if isinstance(value, str) and (_INT if annotation is int else _FLOAT).fullmatch(value):
                number = annotation(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and (
                    annotation is float or isinstance(value, int)):
                number = annotation(value)
            else:
                raise _Unhandled
            if info.clamp or (info.min is not None and number < info.min) or (
                    info.max is not None and number > info.max):
                raise _Unhandled  # typer words the range error
            return number
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            try:
                return coerce_cli_choice(value, choices=tuple(annotation), case_sensitive=info.case_sensitive, ctx=ctx)
            except ValueError:
                raise _Unhandled from None  # typer words the "not one of" error
        if isinstance(annotation, type) and issubclass(annotation, Path) and isinstance(value, (str, Path)):
            path_type = info.path_type or annotation
            if not (isinstance(path_type, type) and issubclass(path_type, Path)):
                raise _Unhandled
            # typer's own checks (exists, readable, ...) on a value already made a Path
            return coerce_cli_path(value if isinstance(value, path_type) else path_type(value), info,
                                   path_type=path_type, param=param, ctx=ctx)
        raise _Unhandled

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):
        descriptor: Any

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            annotation, info = self.annotation, self.parameter_info
            try:
                if get_origin(annotation) is list:
                    (item,) = get_args(annotation)
                    values = value if isinstance(value, (list, tuple)) else [value]
                    return [leaf(item, info, v, param, ctx) for v in values]
                return leaf(annotation, info, value, param, ctx)
            except _Unhandled:
                return typer_factory(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor: Any) -> Any:
        if descriptor.file_annotation is not None:
            return typer_factory(descriptor)  # opens files; no pydantic involved
        return PlainRuntimeParam(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
                                 descriptor=descriptor)

    try:  # typer's internals are no API: patch only if they still fit together as expected
        from typer._coercion import resolve_type_descriptor
        from typer.models import OptionInfo

        probe = build_runtime_param(resolve_type_descriptor(list[int], OptionInfo()))
        if probe._coerce_value(("7",), param=None, ctx=None) != [7]:
            return
    except Exception:
        return
    build_runtime_param._runner404 = True
    core.build_runtime_param = build_runtime_param
