import datetime as dt

import pytest

from pipeline.errors import ConfigError
from pipeline.training.months import (FIRST_MONTH, FIRST_RUN_DATE, check_run_date, months_between, months_for,
                                      parse_date, shift_month)


@pytest.mark.parametrize("run_date, train, val", [
    ("2021-03-15", "2021-01", "2021-02"),
    ("2021-08-15", "2021-06", "2021-07"),
    ("2022-01-15", "2021-11", "2021-12"),
    ("2022-02-01", "2021-12", "2022-01"),
    ("2021-12-31", "2021-10", "2021-11"),
])
def test_run_date_gives_the_two_previous_months(run_date, train, val):
    assert months_for(dt.date.fromisoformat(run_date)) == (train, val)


@pytest.mark.parametrize("month, delta, expected", [
    ("2021-01", -1, "2020-12"), ("2021-12", 1, "2022-01"), ("2021-06", -18, "2019-12"), ("2021-06", 0, "2021-06"),
])
def test_shift_month_crosses_year_boundaries(month, delta, expected):
    assert shift_month(month, delta) == expected


@pytest.mark.parametrize("text", ["2021-02-30", "15/08/2021", "yesterday", "2021-13-01", ""])
def test_invalid_dates_are_refused_with_a_sentence_naming_them(text):
    with pytest.raises(ConfigError, match="is not a valid date"):
        parse_date(text)


def test_no_date_means_today():
    assert parse_date(None, today=dt.date(2026, 11, 25)) == dt.date(2026, 11, 25)


def test_months_between_includes_both_ends_and_refuses_reversed_ranges():
    assert months_between(dt.date(2021, 11, 3), dt.date(2022, 2, 1)) == ["2021-11", "2021-12", "2022-01", "2022-02"]
    with pytest.raises(ConfigError, match="before the start date"):
        months_between(dt.date(2022, 2, 1), dt.date(2021, 11, 3))


@pytest.mark.parametrize("text", ["0001-01-01", "2014-06-30", "2014-12-31"])
def test_run_dates_before_the_first_fhv_month_are_refused(text):
    with pytest.raises(ConfigError, match=f"The run date {text} is before the first FHV month 2015-01; use a run "
                                          "date from 2015-01-01 on."):
        parse_date(text)
    with pytest.raises(ConfigError, match="before the first FHV month"):
        check_run_date(dt.date.fromisoformat(text), today=dt.date(2026, 11, 25))


def test_the_first_run_dates_are_in_the_first_fhv_month():
    """January and February 2015 are allowed: their runs read 2014 months, which fail as not published."""
    assert parse_date("2015-01-01") == FIRST_RUN_DATE
    assert months_for(FIRST_RUN_DATE) == ("2014-11", "2014-12")
    assert months_for(dt.date(2015, 3, 1)) == (FIRST_MONTH, "2015-02")
    check_run_date(FIRST_RUN_DATE, today=dt.date(2026, 11, 25))


@pytest.mark.parametrize("day, refused", [
    ("2026-12-31", None), ("2027-01-20", "2027-01-20 would validate on 2026-12, a month not over yet"),
    ("2027-02-01", "2027-02-01 would validate on 2027-01, a month in the future"),
])
def test_a_run_date_is_allowed_only_when_its_validation_month_has_ended_and_a_refusal_names_the_latest(day, refused):
    today = dt.date(2026, 12, 6)
    if refused is None:
        check_run_date(dt.date.fromisoformat(day), today)
        return
    with pytest.raises(ConfigError, match=f"{refused} \\(today is 2026-12-06\\); use a run date up to 2026-12-31"):
        check_run_date(dt.date.fromisoformat(day), today)
