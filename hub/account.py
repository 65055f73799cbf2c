"""Whose a token is, as the Hub says (`whoami`), with a short time limit and a small answer bound."""

from __future__ import annotations

import json

import httpx

from diffcd_hub._common import resolve_endpoint

MAX_ANSWER_BYTES = 64_000


def token_owner(token: str, *, endpoint: str | None = None, timeout: float = 5.0) -> str | None:
    """The user name the Hub gives for `token`, or None when the Hub refuses it (401/403).

    Raises:
      httpx.HTTPError: the Hub could not be reached in `timeout` seconds.
      ValueError: the answer is not the Hub's whoami JSON.
    """
    url = f"{resolve_endpoint(endpoint)}/api/whoami-v2"
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
    with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as client:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code in (401, 403):
                return None
            response.raise_for_status()
            body = b""
            for chunk in response.iter_raw():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise ValueError("the Hub's whoami answer is too large")
    name = json.loads(body).get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("the Hub's whoami answer has no user name")
    return name
