"""The ``--help`` layout of every entry point (:class:`HelpFormatter`); imports nothing heavy, so the data
tools use it without loading torch."""
from __future__ import annotations

import argparse
import copy
import textwrap


def shows_default(action: argparse.Action) -> bool:
    """Whether ``--help`` appends ``(default: X)`` to this option: not for ``--help``, a required or positional
    flag, a switch that is off by default, a default of None or SUPPRESS (the help text says what happens),
    nor where the help text already names its default."""
    if isinstance(action, argparse._HelpAction) or action.required or not action.option_strings:
        return False
    if action.default in (None, argparse.SUPPRESS) or (action.nargs == 0 and action.default is False):
        return False
    return "default" not in (action.help or "").lower()


def default_text(value) -> str:
    """How a default reads in the help: ``on`` for a switch that is on, ``none`` for an empty list."""
    if value is True:
        return "on"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


_ONLY_DEFAULT = "\0"  # the help text of an option that has none: the formatter writes its default alone


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; every option's default shown (:func:`shows_default`), also where the
    option has no help text; lines wrapped between words only (a long path or a hyphenated word is never
    split across lines)."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and shows_default(action):
            action = copy.copy(action)
            action.help = _ONLY_DEFAULT  # argparse prints a help column only for a help text
        return super()._format_action(action)

    def _expand_help(self, action: argparse.Action) -> str:
        text = "" if action.help in (None, _ONLY_DEFAULT) else super()._expand_help(action)
        if shows_default(action):
            shown = default_text(action.default)
            text = f"{text} (default: {shown})" if text else f"(default: {shown})"
        return text

    def _split_lines(self, text: str, width: int) -> list[str]:
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def describe(parser: argparse.ArgumentParser) -> list[tuple[str, str | None, argparse.Action]]:
    """``(flag, group title, action)`` of every option of ``parser`` (tests and docs)."""
    out = []
    for group in parser._action_groups:
        for action in group._group_actions:
            if action.option_strings:
                out.append((action.option_strings[0], group.title, action))
    return out
