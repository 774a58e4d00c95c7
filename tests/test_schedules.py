import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.orchestration.schedules import CronSchedule, IntervalSchedule, schedule_from_json, seconds_words

UTC = dt.timezone.utc
NY, LONDON = "America/New_York", "Europe/London"


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text, tz):
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def fires(schedule, after, count):
    return [t.astimezone(UTC) for t in schedule.next_fire_times(after, count=count)]


@pytest.mark.parametrize("expr, tz, after, expected", [
    ("0 9 15 * *", NY, utc("2026-01-01T00:00"), ["2026-01-15T14:00", "2026-02-15T14:00", "2026-03-15T13:00"]),
    ("0 9 15 * *", NY, utc("2026-10-01T00:00"), ["2026-10-15T13:00", "2026-11-15T14:00", "2026-12-15T14:00"]),
    # New York falls back on 2026-11-01: 01:30 happens twice on the clock, the job runs once
    ("30 1 * * *", NY, local("2026-10-31T00:00", NY), ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"]),
    # New York springs forward on 2026-03-08: 02:30 does not exist, the job runs at 03:00 EDT
    ("30 2 * * *", NY, local("2026-03-07T00:00", NY), ["2026-03-07T07:30", "2026-03-08T07:00", "2026-03-09T06:30"]),
    # London springs forward on 2026-03-29 at 01:00 GMT: 01:30 runs at 02:00 BST
    ("30 1 * * *", LONDON, local("2026-03-28T00:00", LONDON),
     ["2026-03-28T01:30", "2026-03-29T01:00", "2026-03-30T00:30"]),
    # London falls back on 2026-10-25 at 02:00 BST: 01:30 runs once, in BST
    ("30 1 * * *", LONDON, local("2026-10-24T00:00", LONDON),
     ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]),
    # a wildcard hour follows the clock: both 01:00 EDT and 01:00 EST run
    ("0 * * * *", NY, utc("2026-11-01T04:30"), ["2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00"]),
    # ... and the missing hour in spring is simply not there
    ("30 * * * *", LONDON, utc("2026-03-29T00:00"), ["2026-03-29T00:30", "2026-03-29T01:30", "2026-03-29T02:30"]),
    ("0 9 * * *", "UTC", utc("2026-03-28T00:00"), ["2026-03-28T09:00", "2026-03-29T09:00", "2026-03-30T09:00"]),
])
def test_cron_fire_times_follow_debian_cron_on_dst_days(expr, tz, after, expected):
    assert fires(CronSchedule(expr, tz), after, len(expected)) == [utc(e) for e in expected]


@pytest.mark.parametrize("expr, tz, day, runs", [
    ("30 1 * * *", NY, "2026-11-01", 1),
    ("30 2 * * *", NY, "2026-03-08", 1),
    ("30 1 * * *", LONDON, "2026-10-25", 1),
    ("30 1 * * *", LONDON, "2026-03-29", 1),
    ("0 * * * *", NY, "2026-11-01", 25),
    ("0 * * * *", NY, "2026-03-08", 23),
])
def test_runs_on_a_dst_day_are_counted_on_the_local_calendar(expr, tz, day, runs):
    schedule = CronSchedule(expr, tz)
    start = local(f"{day}T00:00", tz) - dt.timedelta(microseconds=1)
    end = local(f"{day}T23:59:59", tz)
    assert len(schedule.next_fire_times(start, until=end)) == runs


@pytest.mark.parametrize("seconds, anchor, tz, after, expected", [
    # under 24 h: absolute time, the local clock skips 02:00 in spring
    (3600, "2026-03-08T00:00", NY, utc("2026-03-08T05:30"),
     ["2026-03-08T06:00", "2026-03-08T07:00", "2026-03-08T08:00"]),
    (3600, "2026-11-01T00:00", NY, utc("2026-11-01T04:30"),
     ["2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00"]),
    (12 * 3600, "2026-10-24T09:00", LONDON, utc("2026-10-24T00:00"),
     ["2026-10-24T08:00", "2026-10-24T20:00", "2026-10-25T08:00"]),
    # 24 h and longer: the local clock time of the anchor is kept
    (86400, "2026-01-01T09:00", NY, utc("2026-03-07T00:00"),
     ["2026-03-07T14:00", "2026-03-08T13:00", "2026-03-09T13:00"]),
    (86400, "2026-01-01T02:30", NY, utc("2026-03-07T00:00"),
     ["2026-03-07T07:30", "2026-03-08T07:30", "2026-03-09T06:30"]),
    (86400, "2026-01-01T01:30", NY, utc("2026-10-31T00:00"),
     ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"]),
    (7 * 86400, "2026-10-04T09:00", LONDON, utc("2026-10-12T00:00"),
     ["2026-10-18T08:00", "2026-10-25T09:00", "2026-11-01T09:00"]),
    (2, "2026-01-01T00:00", "UTC", utc("2026-06-01T00:00:01"),
     ["2026-06-01T00:00:02", "2026-06-01T00:00:04", "2026-06-01T00:00:06"]),
])
def test_interval_fire_times_keep_clock_time_from_24_hours_up(seconds, anchor, tz, after, expected):
    schedule = IntervalSchedule(seconds, dt.datetime.fromisoformat(anchor), tz)
    assert fires(schedule, after, len(expected)) == [utc(e) for e in expected]


def test_interval_fire_times_before_the_anchor_continue_the_same_grid():
    schedule = IntervalSchedule(3600, "2026-01-01T00:30", "UTC")
    assert fires(schedule, utc("2025-12-31T21:00"), 2) == [utc("2025-12-31T21:30"), utc("2025-12-31T22:30")]


@pytest.mark.parametrize("schedule", [CronSchedule("0 9 15 * *", NY), IntervalSchedule(3600, "2026-01-01", NY)])
def test_a_fire_time_is_strictly_after_the_start_and_until_is_inclusive(schedule):
    first = schedule.next_fire_times(utc("2026-01-01T00:00"), count=1)[0]
    assert schedule.next_fire_times(first, count=1)[0] > first
    assert schedule.next_fire_times(first - dt.timedelta(seconds=1), until=first) == [first]


def test_a_start_in_the_second_pass_of_the_overlap_does_not_repeat_the_first():
    schedule = CronSchedule("30 1 * * *", NY)
    assert fires(schedule, utc("2026-11-01T06:15"), 1) == [utc("2026-11-02T06:30")]


def test_fire_times_are_aware_and_in_the_schedule_zone():
    moment = CronSchedule("0 9 15 * *", NY).next_fire_times(utc("2026-01-01T00:00"), count=1)[0]
    assert moment.isoformat() == "2026-01-15T09:00:00-05:00"


@pytest.mark.parametrize("expr, words", [
    ("0 25 * * *", "bad hour field"),
    ("61 * * * *", "bad minute field"),
    ("0 9 32 * *", "bad day-of-month field"),
    ("0 9 31 2 *", "bad day-of-month field"),
    ("0 9 * 13 *", "bad month field"),
    ("0 9 * * 8", "bad day-of-week field"),
    ("0 9 * *", "has 4 fields"),
    ("0 0 9 * * *", "has 6 fields"),
    ("every day", "has 2 fields"),
])
def test_invalid_cron_expressions_are_refused_naming_the_field(expr, words):
    with pytest.raises(ConfigError, match=words) as caught:
        CronSchedule(expr, NY)
    assert repr(" ".join(expr.split())) in str(caught.value)


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../etc/passwd", "EST5EDT+x", None])
def test_invalid_time_zones_are_refused_with_the_name(tz):
    with pytest.raises(ConfigError, match="is not an IANA time zone name"):
        CronSchedule("0 9 * * *", tz)


@pytest.mark.parametrize("seconds", [0, -60, 1.5, True, "3600", None])
def test_invalid_intervals_are_refused(seconds):
    with pytest.raises(ConfigError, match=f"The interval {seconds!r} is not valid"):
        IntervalSchedule(seconds)


def test_an_invalid_anchor_is_refused():
    with pytest.raises(ConfigError, match="The anchor 'yesterday' is not an ISO date"):
        IntervalSchedule(60, "yesterday")


@pytest.mark.parametrize("anchor", [dt.datetime(2026, 3, 8, 2, 30), "2026-03-08T02:30"])
def test_an_anchor_in_the_spring_forward_gap_moves_forward_by_the_gap(anchor):
    schedule = IntervalSchedule(86400, anchor, NY)  # 02:30 does not exist in New York that day
    assert schedule.anchor.isoformat() == "2026-03-08T03:30:00-04:00"
    assert schedule.describe() == "Every day from 2026-03-08T03:30:00-04:00 (America/New_York)"
    again = schedule_from_json(schedule.to_json())
    assert again == schedule and again.fingerprint() == schedule.fingerprint()
    assert fires(schedule, utc("2026-03-08T00:00"), 2) == [utc("2026-03-08T07:30"), utc("2026-03-09T07:30")]


def test_preview_shows_an_anchor_in_the_spring_forward_gap_as_a_real_time(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FHV_HOME", str(tmp_path))
    assert main(["schedule", "preview", "--interval", "3600", "--anchor", "2026-03-08T02:30", "--timezone", NY,
                 "--start", "2026-03-08T01:00", "--count", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schedule"]["anchor"] == "2026-03-08T03:30:00-04:00"
    assert out["fire_times"][0]["local"] == "2026-03-08T01:30:00-05:00"


def test_a_naive_anchor_is_read_in_the_schedule_zone():
    assert IntervalSchedule(60, dt.datetime(2026, 7, 1, 9), NY).anchor.isoformat() == "2026-07-01T09:00:00-04:00"


@pytest.mark.parametrize("schedule", [CronSchedule("0 9 15 * *", NY),
                                      IntervalSchedule(900, "2026-01-01T00:00", LONDON)])
def test_schedules_round_trip_through_json(schedule):
    again = schedule_from_json(json.loads(json.dumps(schedule.to_json())))
    assert again == schedule and again.fingerprint() == schedule.fingerprint()
    assert CronSchedule.from_json(json.dumps(schedule.to_json())) == schedule


def test_the_fingerprint_changes_with_any_part_of_the_schedule():
    prints = {CronSchedule("0 9 15 * *", NY).fingerprint(), CronSchedule("0 9 15 * *", LONDON).fingerprint(),
              CronSchedule("0 10 15 * *", NY).fingerprint(), IntervalSchedule(60, "2026-01-01", NY).fingerprint(),
              IntervalSchedule(60, "2026-01-02", NY).fingerprint()}
    assert len(prints) == 5
    assert CronSchedule("0  9 15 * *", NY).fingerprint() == CronSchedule("0 9 15 * *", NY).fingerprint()


def test_an_unknown_schedule_type_is_refused_and_none_stays_none():
    assert schedule_from_json(None) is None
    with pytest.raises(ConfigError, match="schedule type 'rrule' is unknown"):
        schedule_from_json({"type": "rrule"})


@pytest.mark.parametrize("schedule, text", [
    (CronSchedule("0 9 15 * *", NY), "At 09:00, on day 15 of the month (America/New_York)"),
    (CronSchedule("*/15 * * * *", "UTC"), "Every 15 minutes (UTC)"),
    (IntervalSchedule(3600, "2026-01-01", "UTC"), "Every hour from 2026-01-01T00:00:00+00:00 (UTC)"),
    (IntervalSchedule(172800, "2026-01-01", NY), "Every 2 days from 2026-01-01T00:00:00-05:00 (America/New_York)"),
])
def test_schedules_describe_themselves_in_words_with_the_zone(schedule, text):
    assert schedule.describe() == text


@pytest.mark.parametrize("schedule, words", [
    (CronSchedule("30 2 * * *", NY), "runs right after the jump"),
    (CronSchedule("30 1 * * *", LONDON), "runs once, at its first occurrence"),
    (CronSchedule("0 * * * *", NY), "runs in both repeated hours"),
    (CronSchedule("0 9 * * *", "UTC"), "has no daylight saving time changes"),
    (IntervalSchedule(3600, "2026-01-01", NY), "shifts by the change"),
    (IntervalSchedule(86400, "2026-01-01", NY), "keep the local clock time"),
])
def test_each_schedule_states_its_dst_policy(schedule, words):
    assert words in schedule.dst_policy()


@pytest.mark.parametrize("seconds, words", [(1, "1 second"), (90, "90 seconds"), (3600, "1 hour"),
                                            (5400, "90 minutes"), (864000, "10 days")])
def test_seconds_are_written_in_the_largest_whole_unit(seconds, words):
    assert seconds_words(seconds) == words


def test_preview_prints_local_and_utc_iso_times_as_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FHV_HOME", str(tmp_path))
    code = main(["schedule", "preview", "--cron", "30 2 * * *", "--timezone", NY, "--start", "2026-03-07",
                 "--count", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [t["local"] for t in out["fire_times"]] == ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00",
                                                       "2026-03-09T02:30:00-04:00"]
    assert out["fire_times"][1]["utc"] == "2026-03-08T07:00:00+00:00"
    assert "right after the jump" in out["dst_policy"]


def test_preview_of_an_interval_prints_a_table_with_the_policy(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FHV_HOME", str(tmp_path))
    code = main(["schedule", "preview", "--interval", "86400", "--anchor", "2026-01-01T09:00", "--timezone", NY,
                 "--start", "2026-03-07T12:00", "--count", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2026-03-08T09:00:00-04:00" in out and "2026-03-08T13:00:00+00:00" in out
    assert "keep the local clock time" in " ".join(out.split())


@pytest.mark.parametrize("argv, words", [
    (["--cron", "0 25 * * *"], "bad hour field"),
    (["--cron", "0 9 * * *", "--timezone", "Nowhere/City"], "'Nowhere/City' is not an IANA time zone name"),
    (["--cron", "0 9 * * *", "--start", "soon"], "'soon' is not an ISO date"),
])
def test_preview_refuses_bad_input_with_a_sentence_and_exit_code_2(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.setenv("FHV_HOME", str(tmp_path))
    assert main(["schedule", "preview", *argv]) == 2
    assert words in " ".join(capsys.readouterr().err.split())
