"""Tests of get_data.download against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from get_data.download import DownloadError, download_dataset, fetch_file
from serving.local_server import free_port

# A real HTTP server on 127.0.0.1 per module.
pytestmark = pytest.mark.integration

HTML_PAGE = b"<!DOCTYPE html>\n<html><body><h1>Sign in</h1></body></html>\n"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a small Parquet file and an HTML page."""
    folder = tmp_path_factory.mktemp("served")
    frame = pd.DataFrame(
        {
            "danceability": [0.1, 0.5, 0.9, 0.3],
            "genre": ["Rap", "Emo", "Rap", "RnB"],
            "title": ["a", None, "c", "d"],
        }
    )
    frame.to_parquet(folder / "songs.parquet", index=False)
    (folder / "page.parquet").write_bytes(HTML_PAGE)
    return folder


@pytest.fixture(scope="module")
def base_url(served_dir: Path) -> Iterator[str]:
    """URL of a real HTTP server serving ``served_dir``, stopped after the module."""
    handler = functools.partial(_QuietHandler, directory=str(served_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_http_download_writes_file_with_digest_and_rows(
    base_url: str, served_dir: Path, tmp_path: Path
) -> None:
    source = served_dir / "songs.parquet"
    out = download_dataset(f"{base_url}/songs.parquet", tmp_path / "raw_data.parquet")

    assert out.path == tmp_path / "raw_data.parquet"
    assert out.path.read_bytes() == source.read_bytes()
    assert out.sha256 == _sha256(source)
    assert out.n_bytes == source.stat().st_size
    assert out.rows == 4
    # Only the finished file is left: no temporary part file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw_data.parquet"]


def test_http_download_with_matching_sha256(
    base_url: str, served_dir: Path, tmp_path: Path
) -> None:
    expected = _sha256(served_dir / "songs.parquet")
    out = download_dataset(f"{base_url}/songs.parquet", tmp_path / "x.parquet", expected.upper())
    assert out.sha256 == expected


def test_http_404_names_the_url_and_status(base_url: str, tmp_path: Path) -> None:
    url = f"{base_url}/missing.parquet"
    with pytest.raises(DownloadError, match="404") as info:
        download_dataset(url, tmp_path / "raw.parquet")
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_names_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/songs.parquet"
    with pytest.raises(DownloadError, match="connection failed") as info:
        download_dataset(url, tmp_path / "raw.parquet", timeout=5)
    assert url in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_sha256_mismatch_names_url_and_both_digests(
    base_url: str, served_dir: Path, tmp_path: Path
) -> None:
    url = f"{base_url}/songs.parquet"
    wrong = "0" * 64
    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        download_dataset(url, tmp_path / "raw.parquet", sha256=wrong)
    message = str(info.value)
    assert url in message
    assert wrong in message
    assert _sha256(served_dir / "songs.parquet") in message
    # A file that failed verification is not left behind as data.
    assert not (tmp_path / "raw.parquet").exists()


def test_html_page_is_not_accepted_as_parquet(base_url: str, tmp_path: Path) -> None:
    url = f"{base_url}/page.parquet"
    with pytest.raises(DownloadError, match="not a readable Parquet file") as info:
        download_dataset(url, tmp_path / "raw.parquet")
    assert url in str(info.value)
    assert "HTML" in str(info.value)
    assert not (tmp_path / "raw.parquet").exists()


def test_progress_is_logged_at_most_about_ten_times(
    base_url: str, served_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = (served_dir / "songs.parquet").stat().st_size
    chunk_size = max(1, size // 100)  # ~100 chunks
    with caplog.at_level(logging.INFO, logger="get_data.download"):
        fetch_file(f"{base_url}/songs.parquet", tmp_path / "x.parquet", chunk_size=chunk_size)
    progress = [r.getMessage() for r in caplog.records if "bytes" in r.getMessage()]
    assert 1 <= len(progress) <= 11
    assert progress[-1].endswith("(100%)")
    assert f"{size} / {size} bytes" in progress[-1]


def test_local_absolute_path_is_copied(served_dir: Path, tmp_path: Path) -> None:
    source = served_dir / "songs.parquet"
    out = download_dataset(str(source), tmp_path / "raw.parquet")
    assert out.path.read_bytes() == source.read_bytes()
    assert out.rows == 4


def test_local_relative_path_resolves_against_current_directory(
    served_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(served_dir)
    out = download_dataset("songs.parquet", tmp_path / "raw.parquet")
    assert out.sha256 == _sha256(served_dir / "songs.parquet")


def test_file_url_is_copied(served_dir: Path, tmp_path: Path) -> None:
    source = served_dir / "songs.parquet"
    out = download_dataset(source.as_uri(), tmp_path / "raw.parquet")
    assert out.path.read_bytes() == source.read_bytes()


def test_missing_local_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(DownloadError, match="no such file") as info:
        download_dataset(missing.as_uri(), tmp_path / "raw.parquet")
    assert missing.as_uri() in str(info.value)
    assert not (tmp_path / "raw.parquet").exists()


def test_unsupported_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unsupported scheme 'ftp'"):
        download_dataset("ftp://example.org/songs.parquet", tmp_path / "raw.parquet")
