"""Keep secrets out of what the project prints or records: credentials inside URLs.

A URL may carry a secret in its user-info (``https://alice:hunter2@host``, or a token as the
user name, ``https://ghp_x@github.com``), its query (``?token=...``, ``?X-Amz-Signature=...``)
or its fragment (``#access_token=...``). :func:`redact_url` masks them; :func:`redact_text`
does it for every form a URL takes inside a text (a log line, a command, an error message):

- absolute URLs: user-info, and the query values whose name says credential (``token``,
  ``sig``, ``key``, ...);
- percent-encoded absolute URLs (``http%3A%2F%2F...``, e.g. a URL inside another's query);
- relative paths with a query (``url: /file.parquet?token=...``, as urllib3 names the URL of
  a failed request): *every* query value, since nothing tells which ones matter;
- the known secrets of the process (below), wherever they appear.

A URL known to be secret (one passed through the environment: ``${oc.env:...}``, or
``UTIL_LIB_SECRET_<NAME>``, :mod:`util_lib.step.arguments`) is *registered*
(:func:`register_secret_url`): from then on every redaction of the process masks every query
value of a URL to the same place (scheme, host, port, path), whatever the parameter's name
(``?code=``), and masks its user-info and query values as plain text anywhere, raw,
percent-decoded and percent-encoded. The values of ``UTIL_LIB_SECRET_*`` are registered by
every redaction, so each step process masks the secrets the driver gave it. A value masked
as plain text must look like a secret (:func:`looks_secret`: six characters or more, with a
digit and a letter, or twelve or more): ``true`` or ``parquet`` in a secret URL is masked
where it is a query value, not in every log line.

The log handlers of :mod:`util_lib.step.logs` apply :func:`redact_text` to every line and to an
uncaught exception's traceback, and everything that records a URL (parameters, tags, artifact
metadata, reports, the summary) records :func:`redact_url` of it.
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import (
    SplitResult,
    parse_qsl,
    quote,
    quote_plus,
    unquote,
    unquote_plus,
    urlencode,
    urlsplit,
    urlunsplit,
)

from util_lib.names import SECRET_ENV_PREFIX

MASK = "***"
# Query keys whose values are credentials: any key containing one of these (case-insensitive),
# e.g. token, access_token, api_key, X-Amz-Signature, X-Amz-Credential, sig, password.
_SECRET_KEY = re.compile(r"token|key|secret|pass|pwd|sig|auth|credential|session", re.I)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")
# A whole URL percent-encoded, as it appears inside another URL's query or a form body.
_ENCODED_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*%3A%2F%2F[^\s'\"<>`&]+", re.I)
# A path with a query that is not the tail of an absolute URL (no host, word or / before it):
# urllib3's "Max retries exceeded with url: /genres_mod.parquet?token=...".
_RELATIVE_QUERY = re.compile(r"(?<![\w.:/%@-])(/[^\s'\"<>`?#]*)\?([^\s'\"<>`#]+)")
# Punctuation that ends a sentence rather than a URL: "see http://h/x?token=abc." keeps its ".".
_TRAILING = ".,:;!?)]}'\""
_MIN_SECRET = 6
_MIN_PLAIN_SECRET = 12

_lock = threading.Lock()
_secret_texts: set[str] = set()  # masked as plain text wherever they appear
_secret_places: set[tuple[str, str, str]] = set()  # (scheme, host[:port], path): query all secret
_registered_env: set[str] = set()  # UTIL_LIB_SECRET_* values already registered
_pattern: re.Pattern[str] | None = None  # _secret_texts as one regex, longest first


def looks_secret(value: str) -> bool:
    """Tell whether ``value`` is worth masking as plain text wherever it appears.

    Six characters or more with both a digit and a letter (``s3cr3t``, ``hunter2``, tokens,
    signatures), or twelve or more of anything. Shorter or plain words (``true``, ``csv``,
    ``parquet``, a year) would mask innocent parts of every log line; where they are a secret
    URL's query values, they are masked as such.
    """
    if len(value) >= _MIN_PLAIN_SECRET:
        return True
    has_digit = any(c.isdigit() for c in value)
    has_letter = any(c.isalpha() for c in value)
    return len(value) >= _MIN_SECRET and has_digit and has_letter


def _forms(value: str) -> set[str]:
    """``value`` as it may appear in a text: raw, percent-decoded and percent-encoded."""
    decoded = {value, unquote(value), unquote_plus(value)}
    encoded = {form(v, safe="") for v in decoded for form in (quote, quote_plus)}
    return {v for v in decoded | encoded if v and looks_secret(v)}


def register_secret(value: str) -> None:
    """Mask ``value`` (in all its forms, :func:`looks_secret` ones) in every later redaction."""
    global _pattern
    forms = _forms(value)
    with _lock:
        if forms - _secret_texts:
            _secret_texts.update(forms)
            _pattern = None


def register_secret_url(url: str) -> None:
    """Treat ``url`` as a secret: its user-info and every query value are masked from now on.

    Every query value of a URL to the same place (scheme, host, port and path) is masked by
    :func:`redact_url`, whatever the parameter's name; the user name, password and query
    values (with their decoded and encoded forms) are masked as plain text by
    :func:`redact_text` wherever they appear (:func:`looks_secret` ones).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or not parts.netloc:  # not a URL: a secret as a whole
        register_secret(url)
        return
    with _lock:
        _secret_places.add(_place(parts))
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        for part in userinfo.split(":", 1):
            register_secret(part)
    for piece in (parts.query, parts.fragment):
        for _, value in parse_qsl(piece, keep_blank_values=True):
            register_secret(value)
        for raw in re.split(r"[&;]", piece):
            register_secret(raw.partition("=")[2] or raw)


def _place(parts: SplitResult) -> tuple[str, str, str]:
    host = parts.netloc.rpartition("@")[2].lower()
    return parts.scheme.lower(), host, parts.path or "/"


def _register_environment() -> None:
    """Register the secret URLs the driver handed this process (``UTIL_LIB_SECRET_*``)."""
    values = [v for k, v in os.environ.items() if k.startswith(SECRET_ENV_PREFIX) and v]
    for value in values:
        if value not in _registered_env:
            register_secret_url(value)
            with _lock:
                _registered_env.add(value)


def _mask_known(text: str) -> str:
    """Mask the registered secrets that appear in ``text`` as plain text."""
    global _pattern
    if not _secret_texts:
        return text
    pattern = _pattern
    if pattern is None:
        with _lock:
            alternatives = sorted(_secret_texts, key=len, reverse=True)
            pattern = _pattern = re.compile("|".join(map(re.escape, alternatives)))
    return pattern.sub(MASK, text)


def _mask_every_value(query: str) -> str:
    """Every value of ``query`` masked (a bare item, ``?abc``, is masked whole); keys stay."""
    pieces = re.split(r"([&;])", query)
    for i, piece in enumerate(pieces):
        if piece in ("&", ";", ""):
            continue
        key, equals, value = piece.partition("=")
        pieces[i] = f"{key}={MASK}" if equals and value else (piece if equals else MASK)
    return "".join(pieces)


def _mask_named_values(query: str) -> str:
    """The values of ``query`` whose key says credential masked; nested URLs redacted."""
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = [(k, MASK if _SECRET_KEY.search(k) else _redact_nested(v)) for k, v in pairs]
    if masked == pairs:
        return query
    return urlencode(masked, safe="*/:")


def _redact_nested(value: str) -> str:
    """A query value that is itself a URL (``?next=https://...``) gets redacted too."""
    return redact_url(value) if "://" in value else value


def redact_url(url: str, every_query_value: bool = False) -> str:
    """Return ``url`` with its user-info and credential-looking query values masked.

    ``http://alice:hunter2@host:5000/x?token=abc&raw=true`` becomes
    ``http://alice:***@host:5000/x?token=***&raw=true``; a user name alone (often a token) is
    masked whole: ``https://***@github.com/org/repo.git``. A fragment is read like a query
    (``#access_token=...``).

    Parameters
    ----------
    url : str
        The URL. Anything that is not a URL with a network location keeps its text, but for
        the registered secrets (:func:`register_secret`) in it.
    every_query_value : bool, default=False
        Mask every query value, whatever its name (a URL known to be secret). Without it, so
        are those of a URL to a registered secret place (:func:`register_secret_url`).
    """
    _register_environment()
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_known(url)
    if not parts.scheme or not parts.netloc:
        return _mask_known(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else f"{MASK}@{host}"
    every = every_query_value or _place(parts) in _secret_places
    mask = _mask_every_value if every else _mask_named_values
    query = mask(parts.query) if parts.query else ""
    fragment = mask(parts.fragment) if "=" in parts.fragment else parts.fragment
    return _mask_known(urlunsplit((parts.scheme, netloc, parts.path, query, fragment)))


def _split_trailing(text: str) -> tuple[str, str]:
    """``text`` without the sentence punctuation at its end, and that punctuation."""
    stripped = text.rstrip(_TRAILING)
    return stripped, text[len(stripped) :]


def _redact_match(match: re.Match[str]) -> str:
    url, tail = _split_trailing(match.group(0))
    return redact_url(url) + tail


def _redact_encoded_match(match: re.Match[str]) -> str:
    encoded, tail = _split_trailing(match.group(0))
    decoded = unquote(encoded)
    redacted = redact_url(decoded)
    if redacted == decoded:
        return match.group(0)
    return quote(redacted, safe="*") + tail


def _redact_relative(match: re.Match[str]) -> str:
    query, tail = _split_trailing(match.group(2))
    return f"{match.group(1)}?{_mask_every_value(query)}{tail}"


def redact_text(text: str) -> str:
    """Mask the secrets of every URL found in ``text``, in every form (see the module's doc).

    Absolute URLs as :func:`redact_url` does; percent-encoded ones likewise (re-encoded);
    relative paths with a query lose every query value; registered secrets are masked
    wherever they appear.
    """
    _register_environment()
    if "://" in text:
        text = _URL_IN_TEXT.sub(_redact_match, text)
    if "%3a%2f%2f" in text.lower():
        text = _ENCODED_URL_IN_TEXT.sub(_redact_encoded_match, text)
    if "?" in text:
        text = _RELATIVE_QUERY.sub(_redact_relative, text)
    return _mask_known(text)


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
    count = int((environ if environ is not None else os.environ).get("GIT_CONFIG_COUNT") or 0)
    return plain, {
        "GIT_CONFIG_COUNT": str(count + 1),
        f"GIT_CONFIG_KEY_{count}": f"url.{url}.insteadOf",
        f"GIT_CONFIG_VALUE_{count}": plain,
    }
