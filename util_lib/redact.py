"""Keep secrets out of what the project prints or records: credentials inside URLs.

A URL may carry a secret in two places: its user-info (``https://alice:hunter2@host``, or a
token as the user name, ``https://ghp_x@github.com``) and its query (``?token=...``,
``?X-Amz-Signature=...``). :func:`redact_url` masks both; :func:`redact_text` does it for every
URL inside a text (a log line, a command, an error message). The log handlers of
:mod:`util_lib.logs` apply it to every line, and everything that records a URL (parameters,
tags, artifact metadata, reports, the summary) records :func:`redact_url` of it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query keys whose values are credentials: any key containing one of these (case-insensitive),
# e.g. token, access_token, api_key, X-Amz-Signature, X-Amz-Credential, sig, password.
_SECRET_KEY = re.compile(r"token|key|secret|pass|pwd|sig|auth|credential|session", re.I)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")


def redact_url(url: str) -> str:
    """Return ``url`` with its user-info and credential-looking query values masked.

    ``http://alice:hunter2@host:5000/x?token=abc&raw=true`` becomes
    ``http://alice:***@host:5000/x?token=***&raw=true``; a user name alone (often a token) is
    masked whole: ``https://***@github.com/org/repo.git``. Anything that is not a URL with a
    network location is returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEY.search(key) for key, _ in pairs):
            masked = [(k, MASK if _SECRET_KEY.search(k) else v) for k, v in pairs]
            query = urlencode(masked, safe="*/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Mask the secrets of every URL found in ``text`` (see :func:`redact_url`)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def has_secret(url: str) -> bool:
    """Tell whether :func:`redact_url` would mask something in ``url``."""
    return redact_url(url) != url
