"""The one exception type for mistakes a user can fix (bad params, bad data)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem in the user's input, with a message that names the fix.

    Stages print it without a traceback: the traceback would point into our code, while the
    fix is in params.yaml or the data.
    """


def stage_main(func: Callable[[], None]) -> Callable[[], None]:
    """Wrap a stage entry point: logging set up, user errors reported in one line, exit 2."""

    @functools.wraps(func)
    def wrapper() -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        try:
            func()
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper
