"""The app's last line of defence: every failure of every endpoint reaches the visitor as a sentence.

`catch_all(title)` wraps an event function (plain or generator). A gr.Error passes unchanged; the
library's and the Hub helpers' errors (DiffCDError, HubError) are already sentences and become
gr.Errors; anything else (a full disk, the device out of memory, a config nested too deeply, a
bug) becomes a sentence that says what happened and what to do, and the detail is logged on the
server with every secret the request carried (tokens) replaced by ***.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
import traceback
import uuid
from typing import Any, Callable

import gradio as gr

from diffcd import DiffCDError

logger = logging.getLogger("diffcd.space")

SECRET_PARAMETERS = ("token", "oauth_token")


def _secrets(function: Callable, args: tuple, kwargs: dict) -> list[str]:
    """The secret values among a call's arguments (the typed token, the OAuth token)."""
    try:
        bound = inspect.signature(function).bind_partial(*args, **kwargs)
    except TypeError:
        return []
    found = []
    for name in SECRET_PARAMETERS:
        value = bound.arguments.get(name)
        value = getattr(value, "token", value)
        if isinstance(value, str) and len(value.strip()) >= 4:
            found.append(value.strip())
    return found


def scrub(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _is_device_oom(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}"
    return "RESOURCE_EXHAUSTED" in text or ("XlaRuntimeError" in text and "out of memory" in text.lower())


def as_sentence(error: BaseException, title: str, secrets: list[str] = ()) -> gr.Error:
    """The gr.Error a visitor sees for `error`; unexpected ones are logged with a reference."""
    if isinstance(error, gr.Error):
        error.message = scrub(str(error.message), list(secrets))
        return error
    if isinstance(error, DiffCDError):
        return gr.Error(scrub(str(error) or type(error).__name__, list(secrets)), title=title)
    reference = uuid.uuid4().hex[:8]
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        message = ("The server's disk is full, so the result could not be written. Try again in a few "
                   "minutes (old sessions' files are deleted regularly), or run it locally with python app.py.")
    elif isinstance(error, MemoryError) or _is_device_oom(error):
        message = ("The server ran out of memory for this request (the device or the host). Use a smaller "
                   "network, fewer points or a lower mesh resolution, or try again when the app is less busy.")
    elif isinstance(error, RecursionError):
        message = ("A file is nested too deeply to be read (e.g. a config.json of thousands of nested "
                   "levels): it is not a diffcd file.")
    else:
        message = (f"Something unexpected went wrong ({type(error).__name__}). Try again; if it happens "
                   f"again, report it with the reference {reference}.")
    detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    logger.error("%s [ref %s]:\n%s", title, reference, scrub(detail, list(secrets)))
    return gr.Error(message, title=title)


def catch_all(title: str) -> Callable[[Callable], Callable]:
    """Turn every exception of the wrapped event function (plain or generator) into a sentence."""

    def decorate(function: Callable) -> Callable:
        if inspect.isgeneratorfunction(function):
            @functools.wraps(function)
            def generator(*args: Any, **kwargs: Any):
                try:
                    yield from function(*args, **kwargs)
                except GeneratorExit:
                    raise
                except BaseException as error:  # noqa: BLE001 - the point of a catch-all
                    if isinstance(error, (KeyboardInterrupt, SystemExit)):
                        raise
                    raise as_sentence(error, title, _secrets(function, args, kwargs)) from None
            return generator

        @functools.wraps(function)
        def plain(*args: Any, **kwargs: Any):
            try:
                return function(*args, **kwargs)
            except BaseException as error:  # noqa: BLE001
                if isinstance(error, (KeyboardInterrupt, SystemExit)):
                    raise
                raise as_sentence(error, title, _secrets(function, args, kwargs)) from None
        return plain

    return decorate
