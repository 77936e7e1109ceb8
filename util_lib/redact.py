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


def git_credentials(url: str, environ: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Split an http(s) git URL into one without credentials and the git settings that put
    them back for git alone.

    MLflow records and prints a project URI (``mlflow.source.name``, the "Running command"
    line), so a repository is handed to it without its user-info; git gets the credentials
    through the environment (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``,
    git 2.31+): ``url.<url with credentials>.insteadOf <url without>``.

    Parameters
    ----------
    url : str
        The repository URL, e.g. ``https://oauth2:token@git.example.com/ml/project.git``.
    environ : dict, optional
        The environment to extend (default: this process's); its own ``GIT_CONFIG_*`` entries
        are kept.

    Returns
    -------
    (str, dict)
        The URL without user-info, and the variables to add to the environment (empty when
        the URL holds no credentials).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, {}
    host = parts.netloc.rsplit("@", 1)[1]
    plain = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    import os

    count = int((environ if environ is not None else os.environ).get("GIT_CONFIG_COUNT") or 0)
    return plain, {
        "GIT_CONFIG_COUNT": str(count + 1),
        f"GIT_CONFIG_KEY_{count}": f"url.{url}.insteadOf",
        f"GIT_CONFIG_VALUE_{count}": plain,
    }
