"""Fetch the raw dataset from a URL or a local path, verify it and check it is Parquet.

Every error names the source redacted (:func:`util_lib.redact.redact_url`) and its cause. A
failed request is re-raised as a :class:`DownloadError` whose message holds the cause alone
(urllib3's own names the request's path and query, ``Max retries exceeded with url:
/file.parquet?token=...``), redacted again, with no chained exception to print.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import requests

from util_lib.redact import redact_text, redact_url

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
DEFAULT_CHUNK_SIZE = 1 << 20  # 1 MiB
_HTTP_SCHEMES = ("http", "https")

_Writer = Callable[[BinaryIO], None]
# "<urllib3.connection.HTTPConnection object at 0x7f...>: " before urllib3's causes.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*")


class DownloadError(RuntimeError):
    """The source could not be fetched, verified or read as Parquet."""


@dataclass(frozen=True)
class DownloadedFile:
    """A fetched and checked dataset file.

    Attributes
    ----------
    path : pathlib.Path
        Local file holding the data.
    sha256 : str
        Hex digest of the file's bytes.
    n_bytes : int
        Size of the file.
    rows : int
        Number of rows, from the Parquet metadata.
    """

    path: Path
    sha256: str
    n_bytes: int
    rows: int


def download_dataset(
    source: str,
    destination: str | os.PathLike[str],
    sha256: str = "",
    timeout: float = DEFAULT_TIMEOUT,
) -> DownloadedFile:
    """Fetch a Parquet dataset, verify its digest and read its row count.

    A file that fails a check is removed, so nothing unverified is left at ``destination``.

    Parameters
    ----------
    source : str
        http(s) URL, ``file://`` URL or local path (relative to the current directory).
    destination : str or os.PathLike
        Local file to write.
    sha256 : str, default=""
        Expected hex digest; ``""`` skips the verification.
    timeout : float, default=60.0
        Seconds to wait for the connection and between received bytes (HTTP only).

    Returns
    -------
    DownloadedFile
        The local path, its digest, size and number of rows.

    Raises
    ------
    DownloadError
        If the source cannot be fetched, the digest differs or the bytes are not Parquet.
    """
    path = fetch_file(source, destination, timeout=timeout)
    shown = redact_url(source)
    try:
        digest = file_sha256(path)
        if sha256:
            verify_sha256(digest, sha256, shown)
        rows = parquet_row_count(path, shown)
    except DownloadError:
        path.unlink(missing_ok=True)
        raise
    n_bytes = path.stat().st_size
    logger.info("Fetched %s: %d bytes, %d rows, sha256 %s", shown, n_bytes, rows, digest)
    return DownloadedFile(path=path, sha256=digest, n_bytes=n_bytes, rows=rows)


def fetch_file(
    source: str,
    destination: str | os.PathLike[str],
    timeout: float = DEFAULT_TIMEOUT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Path:
    """Download an http(s) URL, or copy a ``file://`` URL or local path, to a local file.

    The bytes go to a temporary file next to ``destination`` that is moved into place only
    once complete, so an interrupted fetch never leaves a partial file behind.

    Parameters
    ----------
    source : str
        http(s) URL, ``file://`` URL or local path (relative to the current directory).
    destination : str or os.PathLike
        Local file to write; its folder must exist.
    timeout : float, default=60.0
        Seconds to wait for the connection and between received bytes (HTTP only).
    chunk_size : int, default=1 MiB
        Bytes read at a time from an HTTP response.

    Returns
    -------
    pathlib.Path
        ``destination`` as a path.

    Raises
    ------
    DownloadError
        On an HTTP error status, a timeout, an unreachable host, a missing local file or an
        unsupported scheme; the message names the source and the cause.
    """
    destination = Path(destination)
    scheme = urlparse(source).scheme.lower()
    if scheme in _HTTP_SCHEMES:
        writer = _http_writer(source, timeout, chunk_size)
    else:
        writer = _copy_writer(_local_source_path(source))
    _write_atomically(destination, writer, redact_url(source))
    return destination


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the sha256 hex digest of a file.

    Parameters
    ----------
    path : str or os.PathLike
        File to hash.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(DEFAULT_CHUNK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(actual: str, expected: str, source: str) -> None:
    """Compare a digest with the expected one.

    Parameters
    ----------
    actual : str
        Digest of the fetched bytes.
    expected : str
        Expected hex digest (case and surrounding spaces are ignored).
    source : str
        URL or path the bytes came from (redacted), named in the error.

    Raises
    ------
    DownloadError
        If the digests differ.
    """
    if actual.lower() != expected.strip().lower():
        raise DownloadError(
            f"sha256 mismatch for {source}: expected {expected.strip().lower()}, got {actual}"
        )


def parquet_row_count(path: str | os.PathLike[str], source: str) -> int:
    """Return the number of rows of a Parquet file, reading only its footer.

    Parameters
    ----------
    path : str or os.PathLike
        Local file to read.
    source : str
        URL or path the bytes came from (redacted), named in the error.

    Returns
    -------
    int
        Number of rows.

    Raises
    ------
    DownloadError
        If the file is not readable Parquet (e.g. an HTML error or login page).
    """
    try:
        return pq.read_metadata(path).num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        hint = ""
        if _looks_like_markup(path):
            hint = " (the content looks like HTML/XML, e.g. an error page)"
        raise DownloadError(f"{source} is not a readable Parquet file{hint}: {exc}") from exc


def _http_writer(url: str, timeout: float, chunk_size: int) -> _Writer:
    """Return a function that streams ``url`` into an open binary file."""
    shown = redact_url(url)

    def write(handle: BinaryIO) -> None:
        logger.info("Downloading %s", shown)
        try:
            with requests.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                total = _content_length(response)
                _copy_with_progress(response.iter_content(chunk_size), handle, total, shown)
        except requests.RequestException as exc:
            cause = _describe(exc, timeout)
        else:
            return
        # Raised outside the handler: no exception is chained that repeats urllib3's message.
        raise DownloadError(f"Could not download {shown}: {cause}")

    return write


def _describe(exc: requests.RequestException, timeout: float) -> str:
    """The cause of a failed request in a few words, without the request's path or query."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        response = exc.response
        text = f"HTTP {response.status_code} {response.reason}"
        if response.history:
            # Where the redirects led; its query may be the credentials the server handed out.
            text += f" (redirected to {redact_url(response.url, every_query_value=True)})"
        return text
    reason = exc.args[0] if exc.args else exc
    # urllib3's MaxRetryError ("... with url: /path?query (Caused by X)") -> X, which names
    # the host and the failure only.
    reason = getattr(reason, "reason", None) or reason
    cause = _OBJECT_REPR.sub("", str(reason)) or type(exc).__name__
    if isinstance(exc, requests.Timeout):
        text = f"timed out after {timeout:g} s ({cause})"
    elif isinstance(exc, requests.ConnectionError):
        text = f"connection failed (host unknown, unreachable or refusing: {cause})"
    else:
        text = f"{type(exc).__name__}: {cause}"
    return redact_text(text)


def _copy_writer(path: Path) -> _Writer:
    """Return a function that copies a local file into an open binary file."""

    def write(handle: BinaryIO) -> None:
        logger.info("Copying %s", path)
        with open(path, "rb") as src:
            shutil.copyfileobj(src, handle)

    return write


def _copy_with_progress(
    chunks: Iterable[bytes], handle: BinaryIO, total: int | None, url: str
) -> None:
    """Write chunks, logging progress about ten times at most.

    With a known size a line is logged at every further 10 %; without one, each time the
    byte count doubles (from 1 MiB), which also keeps the number of lines small.
    """
    written = 0
    next_percent = 10
    next_bytes = DEFAULT_CHUNK_SIZE
    for chunk in chunks:
        handle.write(chunk)
        written += len(chunk)
        if total:
            percent = min(100, written * 100 // total)
            if percent >= next_percent:
                logger.info("%s: %d / %d bytes (%d%%)", url, written, total, percent)
                next_percent = (percent // 10 + 1) * 10
        elif written >= next_bytes:
            logger.info("%s: %d bytes", url, written)
            next_bytes *= 2
    if not total or next_percent <= 100:
        # Size unknown, or the last chunk fell short of the next mark: report the end once.
        logger.info("%s: %d bytes received", url, written)


def _content_length(response: requests.Response) -> int | None:
    """Return the announced body size, or None when absent or not a number."""
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _local_source_path(source: str) -> Path:
    """Resolve a ``file://`` URL or a local path, checking that it is a file."""
    parsed = urlparse(source)
    shown = redact_url(source)
    if parsed.scheme.lower() == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DownloadError(
                f"Could not copy {shown}: a file:// URL with a remote host "
                f"({parsed.hostname!r}) is not supported"
            )
        path = Path(unquote(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:
        # One letter would be a Windows drive; anything longer is a scheme we do not speak.
        raise DownloadError(
            f"Could not fetch {shown}: unsupported scheme {parsed.scheme!r} "
            "(use http, https, file or a local path)"
        )
    else:
        path = Path(source)
    path = path.expanduser().resolve()
    if not path.is_file():
        raise DownloadError(f"Could not copy {source}: no such file {path}")
    return path


def _write_atomically(destination: Path, writer: _Writer, source: str) -> None:
    """Run ``writer`` on a temporary file beside ``destination``, then move it into place."""
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            writer(handle)
        os.replace(tmp_name, destination)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DownloadError(f"Could not fetch {source} into {destination}: {exc}") from exc
        raise


def _looks_like_markup(path: str | os.PathLike[str]) -> bool:
    """Tell whether a file starts like an HTML or XML document."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512).lstrip()
    except OSError:
        return False
    return head.startswith(b"<")
