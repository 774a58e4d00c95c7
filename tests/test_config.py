import pytest

from pipeline.config import TLC_TEMPLATE, load_settings, normalize_data_url
from pipeline.errors import ConfigError


def test_settings_come_from_the_environment(tmp_path):
    settings = load_settings({"FHV_HOME": str(tmp_path), "FHV_DATA_URL": "tlc"})
    assert settings.home == tmp_path
    assert settings.data_url == TLC_TEMPLATE
    assert settings.db_path == tmp_path / "history.db"
    assert not settings.is_synthetic


def test_demo_is_the_default_and_is_labelled_synthetic(tmp_path):
    settings = load_settings({"FHV_HOME": str(tmp_path)})
    assert settings.data_url == "demo" and settings.is_synthetic


@pytest.mark.parametrize("bad, message", [
    ("https://example.org/fhv.parquet", "has no {month} placeholder"),
    ("demo:abc", "must be a whole number"),
    ("demo:5", "at least 10"),
])
def test_bad_data_urls_are_refused_naming_the_value(bad, message):
    with pytest.raises(ConfigError, match=message) as caught:
        normalize_data_url(bad)
    assert bad in str(caught.value)


def test_a_folder_is_a_valid_data_source(tmp_path):
    assert normalize_data_url(str(tmp_path)) == str(tmp_path)


def test_a_bad_timeout_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="FHV_DOWNLOAD_TIMEOUT='soon' is not a number"):
        load_settings({"FHV_HOME": str(tmp_path), "FHV_DOWNLOAD_TIMEOUT": "soon"})


@pytest.mark.parametrize("bad, message", [
    ("ftp://example.org/fhv_{month}.parquet", "uses the scheme 'ftp', which is not supported"),
    ("/nonexistent/fhv_{month}.parquet", "The data folder /nonexistent does not exist"),
    ("file:///nonexistent/fhv_{month}.parquet", "The data folder /nonexistent does not exist"),
])
def test_unusable_data_urls_fail_at_start_up_not_days_later(bad, message):
    with pytest.raises(ConfigError, match=message):
        normalize_data_url(bad)


def test_a_local_template_in_an_existing_folder_is_accepted(tmp_path):
    template = f"{tmp_path}/fhv_tripdata_{{month}}.parquet"
    assert normalize_data_url(template) == template


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "0", "-1", "1e400", "604801"])
def test_a_download_timeout_must_be_a_finite_number_of_seconds_above_0_and_at_most_a_week(tmp_path, raw):
    with pytest.raises(ConfigError, match=f"FHV_DOWNLOAD_TIMEOUT='{raw}' is not valid; use a number of seconds "
                                          r"above 0 and at most 604800 \(a week\), like 60."):
        load_settings({"FHV_HOME": str(tmp_path), "FHV_DOWNLOAD_TIMEOUT": raw})


@pytest.mark.parametrize("raw, seconds", [("0.5", 0.5), ("604800", 604800.0), (" 90 ", 90.0), ("", 60.0)])
def test_a_download_timeout_in_range_is_taken(tmp_path, raw, seconds):
    assert load_settings({"FHV_HOME": str(tmp_path), "FHV_DOWNLOAD_TIMEOUT": raw}).download_timeout == seconds


def test_a_download_deadline_of_0_means_none_and_is_the_only_zero_allowed(tmp_path):
    assert load_settings({"FHV_HOME": str(tmp_path), "FHV_DOWNLOAD_DEADLINE": "0"}).download_deadline == 0
    with pytest.raises(ConfigError, match=r"FHV_DOWNLOAD_DEADLINE='inf' is not valid.*\(or 0 for no deadline\)"):
        load_settings({"FHV_HOME": str(tmp_path), "FHV_DOWNLOAD_DEADLINE": "inf"})


@pytest.mark.parametrize("bad", ["demo:99999999999999999999", "demo:25000001", "demo:²", "demo:", "demo:-5"])
def test_a_demo_size_beyond_the_largest_real_month_is_refused(bad):
    with pytest.raises(ConfigError, match="at least 10 and at most 25,000,000"):
        normalize_data_url(bad)
