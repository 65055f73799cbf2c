"""The help formatter of the `python -m diffcd` subcommands."""

from __future__ import annotations

import argparse
import re

_SAYS_DEFAULT = re.compile(r"\(default\b")


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help only where it tells the reader something.

    Not for a required option or a positional argument, an option without a default (None) or an
    on/off flag (False), nor where the help text already says "(default ...)". A list default is
    shown as the values one would type: "(default: diffcd igr)".
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (action.required or not action.option_strings or default is None or default is False
                or default is argparse.SUPPRESS or _SAYS_DEFAULT.search(text)):
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"
