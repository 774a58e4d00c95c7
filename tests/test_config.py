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
