"""Bad input on the command line: a non-zero exit, one sentence naming the value, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent

FLOOR = "is before the first FHV month 2015-01; use a run date from 2015-01-01 on."
CALENDAR_END = "is too close to the ends of the calendar (years 1 and 9999)"

BAD_COMMAND_LINES = [
    # run dates: the first FHV month is 2015-01, so the first run date is 2015-01-01
    (["run", "--date", "0001-01-01"], "The run date 0001-01-01 " + FLOOR),
    (["run", "--date", "2014-12-31"], "The run date 2014-12-31 " + FLOOR),
    (["run", "--date", "2021-02-30"], "The date '2021-02-30' is not a valid date; use YYYY-MM-DD"),
    (["run", "--date", ""], "The date '' is not a valid date"),
    (["run", "--date", "10000-01-01"], "The date '10000-01-01' is not a valid date"),
    (["run", "--date", "9999-12-31"], "would validate on 9999-11, a month in the future"),
    (["run", "--date", "2021-03-15", "--data-url", "demo:5"], "The demo size in 'demo:5' must be a whole number"),
    (["run", "--date", "2021-03-15", "--data-url", "demo:99999999999999999999"], "at most 25,000,000"),
    (["run", "--date", "2021-03-15", "--data-url", "ftp://h/{month}"], "uses the scheme 'ftp', which is not supported"),
    (["trigger", "--date", "0001-01-01"], "The run date 0001-01-01 " + FLOOR),
    # data URLs no request could reach: refused at once, not retried as if the network were down
    (["run", "--data-url", "http://[::1/{month}"], "The data URL 'http://[::1/{month}' is not a valid URL"),
    (["run", "--data-url", "http://a b/{month}"], "has the host 'a b', which is not a host name"),
    (["trigger", "--data-url", "http:///{month}"], "The data URL 'http:///{month}' names no host"),
    # arguments that are not UTF-8 (bytes a shell passed as they are)
    *[(argv, "The argument 'ab\\xff' is not UTF-8 text") for argv in (
        ["runs", "show", "ab\udcff"], ["runs", "cancel", "ab\udcff"], ["models", "promote", "ab\udcff"],
        ["deployment", "pause", "ab\udcff"], ["deployment", "resume", "ab\udcff"],
        ["trigger", "--deployment", "ab\udcff"], ["notifications", "ls", "--run", "ab\udcff"])],
    (["backfill", "--start", "0001-01-01", "--end", "0001-02-01", "--dry-run"],
     "The run date 0001-01-01 " + FLOOR),
    (["backfill", "--start", "2014-12-01", "--end", "2021-02-01"], "The run date 2014-12-01 is before the first FHV month 2015-01"),
    (["backfill", "--start", "2021-03-01", "--end", "0001-02-01", "--dry-run"], "The run date 0001-02-01 is before the first FHV month"),
    # schedule preview: numbers that overflow, times at the ends of the calendar
    (["schedule", "preview", "--interval", "1e20"], "The interval 1e20 is not valid; use a whole number of seconds"),
    (["schedule", "preview", "--interval", "1e400"], "The interval 1e400 is not valid"),
    (["schedule", "preview", "--interval", "0"], "The interval 0 is not valid"),
    (["schedule", "preview", "--interval", "nan"], "The interval nan is not valid"),
    (["schedule", "preview", "--interval", ""], "The interval  is not valid"),
    (["schedule", "preview", "--interval", "1.5"], "The interval 1.5 is not valid"),
    (["schedule", "preview", "--interval", "60", "--count", "100000000000"], "The count 100000000000 is not valid"),
    (["schedule", "preview", "--interval", "60", "--count", "1001"], "The count 1001 is more fire times than a "
                                                                      "preview lists; use at most 1000."),
    (["schedule", "preview", "--interval", "60", "--count", "-1"], "The count -1 is not valid"),
    (["schedule", "preview", "--cron", "0 9 * * *", "--start", "9999-12-31T23:00", "--timezone",
      "America/New_York"], "The time '9999-12-31T23:00' " + CALENDAR_END + " to use in America/New_York."),
    (["schedule", "preview", "--interval", "60", "--start", "9999-12-31T23:59:59-05:00"], CALENDAR_END),
    (["schedule", "preview", "--interval", "60", "--start", "0001-01-01T00:00+05:00"], CALENDAR_END),
    (["schedule", "preview", "--interval", "60", "--anchor", "0001-01-01", "--timezone", "Asia/Tokyo"],
     "The time '0001-01-01' " + CALENDAR_END + " to use in Asia/Tokyo."),
    (["schedule", "preview", "--cron", "0 0 29 2 *", "--start", "9997-03-01"],
     "has no fire time after 9997-03-01T00:00:00+00:00 within the calendar (years 1 to 9999)."),
    (["schedule", "preview", "--interval", "86400", "--start", "9999-12-31T12:00"], "has no fire time after"),
    (["schedule", "preview", "--cron", "0 9 * * *", "--start", "tomorrow"], "The time 'tomorrow' is not an ISO date"),
    (["schedule", "preview", "--cron", "0 9 * * *", "--start", "2021-02-30"], "The time '2021-02-30' is not an ISO"),
    (["schedule", "preview", "--cron", "0 9 * * *", "--timezone", "Mars/Olympus"], "'Mars/Olympus' is not an IANA"),
    (["schedule", "preview", "--cron", "0 9 * * *", "--timezone", "../../etc/passwd"], "is not an IANA time zone"),
    (["schedule", "preview", "--cron", ""], "The cron expression '' has 0 fields"),
    (["schedule", "preview", "--cron", "61 * * * *"], "The cron expression '61 * * * *' is invalid"),
    (["schedule", "preview", "--cron", "0 0 31 2 *"], "The cron expression '0 0 31 2 *' is invalid"),
    (["schedule", "preview", "--cron", "[/]"], "The cron expression '[/]' has 1 fields"),
    # runs
    (["runs", "ls", "--limit", "99999999999999999999"], "The limit '99999999999999999999' is not valid; use a whole "
                                                        "number from 1 to 1,000,000."),
    (["runs", "ls", "--limit", "0"], "The limit '0' is not valid"),
    (["runs", "ls", "--limit", "-5"], "The limit '-5' is not valid"),
    (["runs", "ls", "--limit", "1e3"], "The limit '1e3' is not valid"),
    (["runs", "ls", "--limit", "²"], "The limit '²' is not valid"),
    (["runs", "ls", "--state", "bogus"], "'bogus' is not a state; use one of SCHEDULED"),
    (["runs", "show", "[/]"], "The run id '[/]' matches no run"),
    (["runs", "show", "[bold]nope"], "The run id '[bold]nope' matches no run"),
    (["runs", "cancel", "[/x]"], "The run id '[/x]' matches no run"),
    # numbers of the other commands' options
    (["work-queue", "preview", "--hours", "1e308"], "The number of hours 1e308 is not valid; use a number above 0 "
                                                    "and at most 876000 (100 years)"),
    (["work-queue", "preview", "--hours", "inf"], "The number of hours inf is not valid"),
    (["work-queue", "create", "gpu", "--limit", "1e300"], "The concurrency limit 1e300 is not valid"),
    (["backfill", "--start", "2021-03-01", "--end", "2021-04-01", "--concurrency", "1e300"],
     "The concurrency 1e300 is not valid"),
    (["scheduler", "--tick", "1e308"], "The number of seconds 1e308 is not valid"),
    (["scheduler", "--tick", "0.0000004"], "The scheduler option tick=4e-07 s is shorter than the 0.01 s its loop "
                                           "can honour"),
    (["worker", "--heartbeat", "0.001"], "The worker option heartbeat=0.001 s is shorter than the 0.01 s"),
    (["scheduler", "--stale-after", "1e20"], "The number of seconds 1e20 is not valid"),
]

BAD_ENVIRONMENTS = [
    ({"FHV_DOWNLOAD_TIMEOUT": "inf"}, "FHV_DOWNLOAD_TIMEOUT='inf' is not valid; use a number of seconds above 0"),
    ({"FHV_DOWNLOAD_TIMEOUT": "nan"}, "FHV_DOWNLOAD_TIMEOUT='nan' is not valid"),
    ({"FHV_DOWNLOAD_TIMEOUT": "0"}, "FHV_DOWNLOAD_TIMEOUT='0' is not valid"),
    ({"FHV_DOWNLOAD_TIMEOUT": "-1"}, "FHV_DOWNLOAD_TIMEOUT='-1' is not valid"),
    ({"FHV_DOWNLOAD_TIMEOUT": "1e400"}, "FHV_DOWNLOAD_TIMEOUT='1e400' is not valid"),
    ({"FHV_DOWNLOAD_TIMEOUT": "1e10"}, "FHV_DOWNLOAD_TIMEOUT='1e10' is not valid; use a number of seconds above 0 "
                                       "and at most 604800 (a week), like 60."),
    ({"FHV_DOWNLOAD_TIMEOUT": "soon"}, "FHV_DOWNLOAD_TIMEOUT='soon' is not a number"),
    ({"FHV_DOWNLOAD_DEADLINE": "nan"}, "FHV_DOWNLOAD_DEADLINE='nan' is not valid; use a number of seconds above 0 "
                                       "and at most 604800 (a week) (or 0 for no deadline)"),
    ({"FHV_DATA_URL": "demo:3"}, "The demo size in 'demo:3' must be a whole number of rows of at least 10"),
    ({"FHV_SOLVER": "magic"}, "FHV_SOLVER='magic' is not a solver"),
]


def run(monkeypatch, capsys, tmp_path, argv, env=None) -> tuple[int, str]:
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    monkeypatch.setenv("FHV_DATA_URL", "demo:2000")
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse refuses an option's value before any command runs
        code = exit.code
    out, err = capsys.readouterr()
    return code, out + err


def said(output: str, phrase: str) -> bool:
    """The phrase, wherever the terminal width wrapped it."""
    return " ".join(phrase.split()) in " ".join(output.split())


@pytest.mark.parametrize("argv, phrase", BAD_COMMAND_LINES, ids=[" ".join(a) for a, _ in BAD_COMMAND_LINES])
def test_a_bad_command_line_gets_one_sentence_and_no_traceback(monkeypatch, capsys, tmp_path, argv, phrase):
    code, output = run(monkeypatch, capsys, tmp_path, argv)
    assert code != 0 and "Traceback" not in output
    assert said(output, phrase), output
    assert output.count("error:") == 1


@pytest.mark.parametrize("env, phrase", BAD_ENVIRONMENTS, ids=[f"{k}={v}" for e, _ in BAD_ENVIRONMENTS
                                                               for k, v in e.items()])
def test_a_bad_environment_variable_gets_one_sentence_naming_it(monkeypatch, capsys, tmp_path, env, phrase):
    code, output = run(monkeypatch, capsys, tmp_path, ["runs", "ls"], env)
    assert code == 2 and "Traceback" not in output
    assert said(output, f"error: {phrase}"), output


def test_no_download_deadline_is_a_valid_setting(monkeypatch, capsys, tmp_path):
    code, output = run(monkeypatch, capsys, tmp_path, ["runs", "ls"], {"FHV_DOWNLOAD_DEADLINE": "0"})
    assert code == 0, output


def test_the_first_allowed_run_date_is_accepted_by_trigger(monkeypatch, capsys, tmp_path):
    code, output = run(monkeypatch, capsys, tmp_path, ["trigger", "--date", "2015-01-01", "--json"])
    assert code == 0 and '"train_month": "2014-11"' in output


def test_a_preview_that_reaches_the_end_of_the_calendar_lists_what_fits(monkeypatch, capsys, tmp_path):
    code, output = run(monkeypatch, capsys, tmp_path, ["schedule", "preview", "--cron", "0 9 15 * *", "--start",
                                                       "9999-11-01"])
    assert code == 0 and "Traceback" not in output
    assert "9999-11-15T09:00:00+00:00" in output and "9999-12-15T09:00:00+00:00" in output
    assert said(output, "Only 2 fire time(s): the calendar ends with the year 9999.")


def test_a_preview_of_the_largest_count_is_quick_and_complete(monkeypatch, capsys, tmp_path):
    code, output = run(monkeypatch, capsys, tmp_path, ["schedule", "preview", "--cron", "* * * * *", "--start",
                                                       "2026-01-01", "--count", "1000", "--json"])
    assert code == 0 and output.count('"utc"') == 1000


def test_a_real_process_refuses_a_run_date_before_fhv_with_one_line(tmp_path):
    env = {**os.environ, "FHV_HOME": str(tmp_path / "fhv"), "FHV_DATA_URL": "demo:2000"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--date", "0001-01-01"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: The run date 0001-01-01 " + FLOOR]


@pytest.mark.parametrize("command", ["runs ls", "runs ls --json"])
def test_a_closed_stdout_is_no_traceback(tmp_path, command):
    env = {**os.environ, "FHV_HOME": str(tmp_path / "fhv"), "FHV_DATA_URL": "demo:2000"}
    done = subprocess.run(f"{sys.executable} -m pipeline {command} >&-", shell=True, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("name", ["[/]", "[bold]x[/bold]", "a[red"])
def test_paths_and_errors_with_brackets_are_shown_as_they_are(monkeypatch, capsys, tmp_path, name):
    data = tmp_path / name / "data"
    data.mkdir(parents=True)
    monkeypatch.setenv("FHV_HOME", str(tmp_path / name / "fhv"))
    assert main(["run", "--date", "2021-03-15", "--data-url", f"{data}/{{month}}.parquet"]) == 1
    assert main(["runs", "ls"]) == 0
    output = " ".join(capsys.readouterr().out.split())
    assert f"there is no file {data}/2021-01.parquet." in output and f"Flow runs in {tmp_path / name}" in output
