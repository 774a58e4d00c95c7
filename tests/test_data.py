"""Fetching months: demo, a real local HTTP server (404, 500, slow, truncated, corrupt) and local files."""
from __future__ import annotations

import io
import json
import socket
import time
import urllib.error
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.training import data, demo
from pipeline.config import TLC_TEMPLATE, Settings
from pipeline.errors import DataError, NotPublishedError, TransientError
from tests.httpserver import http_server, serve  # noqa: F401  (http_server is a fixture)

MONTH = "2021-01"
PATH = f"/trip-data/fhv_tripdata_{MONTH}.parquet"
NOT_PUBLISHED = "fhv_tripdata_2021-01 is not published yet (TLC publishes with about two months' delay)"


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def month_bytes() -> bytes:
    return parquet_bytes(demo.generate_month(MONTH, 2_000))


@pytest.fixture
def web(tmp_path, http_server):  # noqa: F811
    """Settings whose data URL is a template on the local test server."""
    template = http_server.url("/trip-data/fhv_tripdata_{month}.parquet")
    return Settings(home=tmp_path, data_url=template, download_timeout=2.0)


def cached_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.cache_dir.rglob("*") if p.is_file())


# --- demo ---------------------------------------------------------------------------------------

def test_a_demo_month_is_generated_once_into_the_cache_and_reused(tmp_path):
    settings = Settings(home=tmp_path, data_url="demo:500")
    path = data.fetch_month(settings, MONTH)
    assert path == tmp_path / "cache" / "demo-500" / "fhv_tripdata_2021-01.parquet"
    modified = path.stat().st_mtime_ns
    assert data.fetch_month(settings, MONTH).stat().st_mtime_ns == modified
    assert pq.read_table(path).equals(demo.generate_month(MONTH, 500))


# --- http ---------------------------------------------------------------------------------------

def test_a_downloaded_month_is_cached_and_reused_without_a_request(web, http_server, month_bytes):  # noqa: F811
    http_server.route(PATH, body=month_bytes)
    path = data.fetch_month(web, MONTH)
    assert path.read_bytes() == month_bytes and path.parent.parent == web.cache_dir
    assert data.fetch_month(web, MONTH) == path
    assert http_server.count(PATH) == 1
    assert cached_files(web) == ["fhv_tripdata_2021-01.parquet"]


def test_a_download_can_show_a_progress_bar(web, http_server, month_bytes):  # noqa: F811
    http_server.route(PATH, body=month_bytes)
    assert data.fetch_month(web, MONTH, progress=True).read_bytes() == month_bytes


@pytest.mark.parametrize("status", [404, 403])
def test_a_missing_month_is_reported_as_not_published_yet(web, http_server, status):  # noqa: F811
    http_server.route(PATH, status=status)
    with pytest.raises(NotPublishedError) as caught:
        data.fetch_month(web, MONTH)
    assert str(caught.value).startswith(NOT_PUBLISHED)
    assert f"HTTP {status}" in str(caught.value) and caught.value.month == MONTH
    assert cached_files(web) == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_transient_and_caches_nothing(web, http_server, status):  # noqa: F811
    http_server.route(PATH, status=status)
    with pytest.raises(TransientError, match=f"fhv_tripdata_2021-01 .* HTTP {status}"):
        data.fetch_month(web, MONTH)
    assert cached_files(web) == []


def test_another_client_error_is_a_data_error_that_is_not_retried(web, http_server):  # noqa: F811
    http_server.route(PATH, status=410)
    with pytest.raises(DataError, match="HTTP 410") as caught:
        data.fetch_month(web, MONTH)
    assert not isinstance(caught.value, NotPublishedError)


def test_a_failed_download_works_on_a_later_call(web, http_server, month_bytes):  # noqa: F811
    http_server.route(PATH, body=month_bytes, fail_times=1)
    with pytest.raises(TransientError):
        data.fetch_month(web, MONTH)
    assert data.fetch_month(web, MONTH).read_bytes() == month_bytes
    assert http_server.count(PATH) == 2


@pytest.mark.parametrize("pause_at", [None, 1_000], ids=["before-answering", "mid-body"])
def test_a_server_slower_than_the_timeout_is_transient(tmp_path, http_server, month_bytes, pause_at):  # noqa: F811
    template = http_server.url("/trip-data/fhv_tripdata_{month}.parquet")
    settings = Settings(home=tmp_path, data_url=template, download_timeout=0.3)
    http_server.route(PATH, body=month_bytes, delay=3.0, pause_at=pause_at)
    with pytest.raises(TransientError, match="timeout"):
        data.fetch_month(settings, MONTH)
    assert cached_files(settings) == []


def test_a_truncated_body_is_transient_and_leaves_no_file_behind(web, http_server, month_bytes):  # noqa: F811
    http_server.route(PATH, body=month_bytes, truncate_at=len(month_bytes) // 2)
    with pytest.raises(TransientError, match="truncated"):
        data.fetch_month(web, MONTH)
    assert cached_files(web) == []


def test_a_refused_connection_is_transient(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(home=tmp_path, data_url=f"http://127.0.0.1:{port}/fhv_tripdata_{{month}}.parquet")
    with pytest.raises(TransientError, match="fhv_tripdata_2021-01"):
        data.fetch_month(settings, MONTH)


def test_a_body_that_is_not_parquet_is_a_data_error_naming_month_and_url(web, http_server):  # noqa: F811
    http_server.route(PATH, body=b"<html>Access denied</html>", content_type="text/html")
    with pytest.raises(DataError, match="not a readable parquet") as caught:
        data.fetch_month(web, MONTH)
    assert "fhv_tripdata_2021-01" in str(caught.value) and http_server.url(PATH) in str(caught.value)
    assert cached_files(web) == []


def test_a_parquet_without_a_needed_column_is_a_data_error_naming_it(web, http_server):  # noqa: F811
    table = demo.generate_month(MONTH, 100).drop_columns(["dropOff_datetime"])
    http_server.route(PATH, body=parquet_bytes(table))
    with pytest.raises(DataError, match="dropOff_datetime"):
        data.fetch_month(web, MONTH)
    assert cached_files(web) == []


def test_a_parquet_with_text_timestamps_is_a_data_error(web, http_server):  # noqa: F811
    table = demo.generate_month(MONTH, 100)
    table = table.set_column(1, "pickup_datetime", table["pickup_datetime"].cast(pa.string()))
    http_server.route(PATH, body=parquet_bytes(table))
    with pytest.raises(DataError, match="'pickup_datetime' has type string"):
        data.fetch_month(web, MONTH)


def test_a_parquet_with_zero_rows_is_a_data_error_and_never_cached(web, http_server):  # noqa: F811
    http_server.route(PATH, body=parquet_bytes(demo.generate_month(MONTH, 0)))
    with pytest.raises(DataError) as caught:
        data.fetch_month(web, MONTH)
    assert str(caught.value) == f"fhv_tripdata_2021-01 from {http_server.url(PATH)} has no trips (0 rows)."
    assert cached_files(web) == []


@pytest.mark.parametrize("trickling", ["trickle", "header_trickle"], ids=["body", "headers"])
def test_a_server_trickling_its_body_or_headers_fails_the_attempt_at_its_deadline(tmp_path, http_server,  # noqa: F811
                                                                                 month_bytes, trickling):
    template = http_server.url("/trip-data/fhv_tripdata_{month}.parquet")
    settings = Settings(home=tmp_path, data_url=template, download_timeout=2.0, download_deadline=0.5)
    http_server.route(PATH, body=month_bytes, **{trickling: 0.02})  # never silent for the 2 s timeout
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        data.fetch_month(settings, MONTH)
    assert time.monotonic() - started < 2.0
    assert str(caught.value).startswith(f"Downloading fhv_tripdata_2021-01 from {http_server.url(PATH)} took "
                                        "longer than its deadline of 0.5 s per attempt (")
    assert cached_files(settings) == []


def test_each_template_gets_its_own_readable_cache_folder():
    slug = data.cache_slug(TLC_TEMPLATE)
    assert slug.startswith("d37ci6vzurychx.cloudfront.net-trip-data-fhv_tripdata_month.parquet-")
    assert slug != data.cache_slug(TLC_TEMPLATE.replace("https", "http"))


# --- local files --------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "trips"
    demo.write_month(folder / "fhv_tripdata_2021-01.parquet", MONTH, 100)
    return folder


@pytest.mark.parametrize("make_url", [
    lambda f: str(f),
    lambda f: f"file://{f}",
    lambda f: f"{f}/fhv_tripdata_{{month}}.parquet",
    lambda f: f"file://{f}/fhv_tripdata_{{month}}.parquet",
], ids=["folder", "file-folder", "path-template", "file-template"])
def test_a_local_month_is_used_in_place(tmp_path, folder, make_url):
    settings = Settings(home=tmp_path / "home", data_url=make_url(folder))
    assert data.fetch_month(settings, MONTH) == folder / "fhv_tripdata_2021-01.parquet"
    assert not settings.cache_dir.exists()


def test_a_missing_local_month_is_not_there_yet_and_names_the_path(tmp_path, folder):
    settings = Settings(home=tmp_path, data_url=str(folder))
    with pytest.raises(NotPublishedError) as caught:
        data.fetch_month(settings, "2021-02")
    assert str(caught.value) == (f"fhv_tripdata_2021-02 is not in the data folder yet: there is no file "
                                 f"{folder / 'fhv_tripdata_2021-02.parquet'}.")


def test_a_local_month_without_trips_is_a_data_error_naming_the_file(tmp_path, folder):
    path = folder / "fhv_tripdata_2021-02.parquet"
    pq.write_table(demo.generate_month("2021-02", 0), path)
    with pytest.raises(DataError, match=f"^The file {path} has no trips \\(0 rows\\).$"):
        data.fetch_month(Settings(home=tmp_path, data_url=str(folder)), "2021-02")


def test_a_demo_month_without_trips_is_refused_and_never_written(tmp_path):
    settings = Settings(home=tmp_path, data_url="demo:0")
    with pytest.raises(DataError, match="demo:0/fhv_tripdata_2021-01.parquet would have no trips"):
        data.fetch_month(settings, MONTH)
    assert cached_files(settings) == []


def test_a_corrupt_local_month_is_a_data_error_naming_the_file(tmp_path, folder):
    (folder / "fhv_tripdata_2021-02.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="fhv_tripdata_2021-02.parquet is not a readable parquet"):
        data.fetch_month(Settings(home=tmp_path, data_url=str(folder)), "2021-02")


# --- describing sources -------------------------------------------------------------------------

@pytest.mark.parametrize("data_url, described", [
    ("demo", "synthetic demo data (1,150,000 rows a month)"),
    ("demo:50000", "synthetic demo data (50,000 rows a month)"),
    (TLC_TEMPLATE, "TLC cloudfront"),
    ("tlc", "TLC cloudfront"),
    ("https://mirror.example.org/fhv/fhv_tripdata_{month}.parquet", "mirror.example.org"),
    ("/data/fhv", "/data/fhv"),
    ("file:///data/fhv/fhv_{month}.parquet", "/data/fhv"),
])
def test_a_source_is_described_in_a_few_words(data_url, described):
    assert data.describe_source(data_url) == described


@pytest.mark.parametrize("data_url, resolved", [
    (TLC_TEMPLATE, "https://d37ci6vzurychx.cloudfront.net/trip-data/fhv_tripdata_2021-06.parquet"),
    ("/data/fhv", "/data/fhv/fhv_tripdata_2021-06.parquet"),
    ("file:///data/fhv/fhv_{month}.parquet", "/data/fhv/fhv_2021-06.parquet"),
    ("demo:500", "demo:500/fhv_tripdata_2021-06.parquet"),
])
def test_a_source_resolves_to_the_url_or_path_of_a_month(data_url, resolved):
    assert data.source_url(data_url, "2021-06") == resolved


# --- the test server itself (reused by other test modules) --------------------------------------

def test_the_test_server_records_requests_and_answers_unknown_paths_with_404(http_server):  # noqa: F811
    http_server.route("/api", json={"ok": True}, methods=("POST",))
    request = urllib.request.Request(http_server.url("/api?x=1"), data=b"hello", method="POST")
    with urllib.request.urlopen(request, timeout=2) as response:
        assert json.load(response) == {"ok": True}
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(http_server.url("/nowhere"), timeout=2)
    assert http_server.count("/api") == 1 and http_server.requests[0].body == b"hello"
    assert [r.path for r in http_server.requests] == ["/api?x=1", "/nowhere"]


def test_the_test_server_stops_quickly_even_with_a_sleeping_answer():
    with serve() as server:
        server.route("/slow", body=b"late", delay=30)
        with pytest.raises(OSError):  # a TimeoutError
            urllib.request.urlopen(server.url("/slow"), timeout=0.1)
        started = time.perf_counter()
    assert time.perf_counter() - started < 2


def test_demo_months_before_the_first_fhv_month_are_not_published_like_the_tlcs(tmp_path):
    from pipeline.config import Settings
    from pipeline.errors import NotPublishedError

    settings = Settings(home=tmp_path, data_url="demo:500").ensure_dirs()
    with pytest.raises(NotPublishedError, match="fhv_tripdata_2014-12 is not published: the FHV trip records start in 2015-01."):
        data.fetch_month(settings, "2014-12")
    assert data.fetch_month(settings, "2015-01").is_file()
