"""``--help`` in the words of a command line, not of Python.

Typer's plain help names a value by its Python type (``--db <path>``, ``--workers <int range>``,
an argument as ``PATH... <list[Path]>`` and ``{PATH...}...`` in the usage line). Every charm
command is built with :class:`CharmCommand` (through :class:`CharmTyper`), which shows an
option's value as its metavar (``--db FILE``) or, where none is given, as a word derived from its
type (``N`` for an integer, ``[previous|best]`` for a choice), and an argument as its metavar
alone (``charm top [OPTIONS] [N] [PATH...]``).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperCommand


def _type_facts(param: Any) -> tuple[str, Sequence[Any]]:
    """``(type name, choices)`` of a parameter, from Typer's own types (0.2x) or click's (older)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:
        annotation = desc.annotation
        inner = typing.get_args(annotation)[0] if desc.is_list and typing.get_args(annotation) else annotation
        return getattr(inner, "__name__", str(inner)).lower(), (desc.choices or ()) if desc.is_choice else ()
    kind = getattr(param, "type", None)
    return str(getattr(kind, "name", "text")), tuple(getattr(kind, "choices", ()) or ())


def value_word(param: Any) -> str:
    """The word that stands for a parameter's value in ``--help``: its metavar, else one from its type."""
    if param.metavar:
        return param.metavar
    name, choices = _type_facts(param)
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    if name.startswith(("int", "float")):
        word = "N" if name.startswith("int") else "X"
    elif name in ("path", "posixpath", "windowspath"):
        word = "PATH"
    elif param.param_type_name == "argument" and param.name:
        word = param.name.upper()
    else:
        word = "TEXT"
    return word + ("..." if param.nargs != 1 else "")


def _usage_piece(param: Any) -> str:
    word = value_word(param)
    return word if param.required or word.startswith("[") else f"[{word}]"


class CharmCommand(TyperCommand):
    """A Typer command whose help names values as a command line does (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            takes_value = not (getattr(param, "is_flag", False) or getattr(param, "count", False))
            if takes_value and not param.metavar:
                param.metavar = value_word(param)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_usage_piece(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((value_word(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class CharmTyper(typer.Typer):
    """A Typer app whose commands are :class:`CharmCommand` unless told otherwise."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or CharmCommand, **kwargs)
