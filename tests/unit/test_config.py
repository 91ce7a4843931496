"""The config loader: the example loads, and every mistake is named by file, line, key, reason."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from mailticket import config
from mailticket.config import ImapAccountConfig, ListenerConfig, format_problems, parse_duration
from mailticket.config.locate import Locator
from mailticket.errors import ConfigError, ConfigProblem
from mailticket.model import (
    Calendar,
    Contract,
    ContractType,
    Engineer,
    Interval,
    Line,
    Priority,
    PriorityTargets,
)
from mailticket.sla.business_hours import day_hours
from mailticket.sla.production_calendar import has_decree, package_version

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"
TODAY = date(2025, 10, 1)


def write(tmp_path: Path, text: str, name: str = "mt.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """The problems as the CLI prints them, with the temporary directory cut off."""
    text = format_problems(config.check(path, today=TODAY))
    return text.replace(str(path.parent), "DIR").splitlines()


# --- the shipped example ---------------------------------------------------


def test_example_config_loads_as_shipped() -> None:
    assert config.check(EXAMPLE, today=TODAY) == []
    cfg = config.load(EXAMPLE, today=TODAY)

    assert cfg.path == EXAMPLE
    assert cfg.daemon.data_dir == REPO / "var"
    assert cfg.templates_dir == REPO / "templates"
    assert cfg.database.url == f"sqlite:///{REPO}/var/mailticket.db"
    assert cfg.listeners == (ListenerConfig(host="127.0.0.1", port=2525, protocol="smtp"),)
    assert cfg.relay.host == ""
    assert cfg.relay.maildir == REPO / "var" / "outgoing"
    assert cfg.mail.support_addresses == ("support@example.com",)
    assert cfg.mail.default_locale == "ru"
    assert cfg.imap == ()


def test_example_calendars() -> None:
    cfg = config.load(EXAMPLE, today=TODAY)
    assert cfg.calendars["24x7"] == Calendar(
        id="24x7", timezone="Europe/Moscow", week=((),) * 7, always_open=True
    )
    business = cfg.calendars["business"]
    day = (Interval(time(8, 0), time(20, 0)),)
    assert business.timezone == "Europe/Moscow"
    assert business.week == (day, day, day, day, day, (), ())
    # The Russian production calendar is looked up for whichever year is asked,
    # however far from today.
    assert business.country == "RU"
    assert business.holidays == frozenset()
    for off in (date(2025, 11, 3), date(2026, 1, 9), date(2024, 12, 31), date(2019, 5, 2)):
        assert day_hours(business, off) == (), off
    assert day_hours(business, date(2023, 12, 29)) == day
    for worked in (date(2025, 11, 1), date(2024, 4, 27), date(2024, 12, 28)):
        assert day_hours(business, worked) == day, worked
    assert day_hours(business, date(2025, 11, 4)) == ()


def test_example_plan_engineers_contracts() -> None:
    cfg = config.load(EXAMPLE, today=TODAY)
    plan = cfg.sla_plans["standard"]
    assert (plan.name, plan.warn_ratio) == ("Standard", 0.75)
    assert plan.targets == {
        Priority.CRITICAL: PriorityTargets(30, 240, "24x7"),
        Priority.MAJOR: PriorityTargets(120, 720, "business", next_response_minutes=240),
        Priority.MINOR: PriorityTargets(480, 2160, "business"),
        Priority.TECHNICAL: PriorityTargets(720, 7200, "business"),
    }
    assert cfg.engineers == {
        "anna@example.com": Engineer("anna@example.com", "Anna Petrova", Line.L1),
        "boris@example.com": Engineer("boris@example.com", "Boris Ivanov", Line.L1),
        "clara@example.com": Engineer("clara@example.com", "Clara Smith", Line.L2, locale="en"),
        "dmitry@example.com": Engineer("dmitry@example.com", "Dmitry Sokolov", Line.L3,
                                       timezone="Asia/Novosibirsk"),
    }
    assert cfg.contracts == {
        "acme": Contract(
            id="acme",
            name="ACME Ltd",
            sla_plan="standard",
            contacts=("it@acme.example", "ops@partner.example"),
            domains=("acme.example",),
            locale="ru",
            dedicated_engineer="anna@example.com",
            deputy_engineer="boris@example.com",
            contract_type=ContractType.COMPLEX,
            allow_subject_priority=True,
            monitoring=cfg.contracts["acme"].monitoring,
        ),
        "globex": Contract(
            id="globex",
            name="Globex Corporation",
            sla_plan="standard",
            contacts=("helpdesk@globex.example",),
            locale="en",
            dedicated_engineer="clara@example.com",
            contract_type=ContractType.APPLICATION_SUPPORT,
            monitoring=cfg.contracts["globex"].monitoring,
        ),
    }
    # The monitoring sources themselves are checked in tests/unit/test_monitoring.py.
    assert [s.format for c in cfg.contracts.values() for s in c.monitoring] == [
        "zabbix", "generic", "alertmanager", "nagios"]


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, ""), today=TODAY)
    assert cfg.listeners == (ListenerConfig(),)
    assert cfg.database.url == f"sqlite:///{tmp_path}/var/mailticket.db"
    assert (cfg.calendars, cfg.sla_plans, cfg.engineers, cfg.contracts) == ({}, {}, {}, {})


# --- every mistake, at once ------------------------------------------------

MANY_MISTAKES = """\
[daemon]
workrs = 2
log_format = "xml"

[database]
url = "mysql://root:hunter2@db/mt"

[[listeners]]
host = "0.0.0.0"
port = 70000
protocol = "smtpp"
tls_cert = "certs/missing.pem"

[mail]
support_addresses = ["support@example.com", "help+x@example.com", "not an address"]
default_locale = "de"

[[imap]]
name = "box"
host = "imap.example.com"
user = "u"
address = "other@example.com"
password = "p"
password_file = "secret.txt"

[calendars.business]
timezone = "Europe/Mosco"
mon = ["20:00-08:00"]
tue = ["08:00-13:00", "12:00-20:00"]

[sla_plans.standard]
warn_ratio = 1.5

[sla_plans.standard.critical]
first_response = "4 hours"
resolution = "4h"
calendar = "24x7"

[sla_plans.standard.major]
first_response = "2h"
resolution = "1d"
calendar = "business"

[sla_plans.standard.minor]
first_response = "8h"
resolution = "2d"
calendar = "business"

[engineers."anna@example.com"]
name = "Anna"
line = "L5"

[[contracts]]
id = "acme"
sla_plan = "gold"
domains = ["acme.example"]
dedicated_engineer = "x@y.example"

[[contracts]]
id = "acme"
sla_plan = "standard"
contacts = ["IT@Globex.Example"]
locale = "fr"
"""


def test_many_mistakes_are_all_reported_with_line_key_and_reason(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    assert problems(path) == [
        "DIR/mt.toml:2: daemon.workrs: unknown key; did you mean workers?",
        "DIR/mt.toml:3: daemon.log_format: must be one of kv, json",
        "DIR/mt.toml:6: database.url: unsupported database scheme 'mysql':"
        " use sqlite:///path or postgresql+psycopg://…",
        "DIR/mt.toml:8: listeners[0].tls_key: required when tls_cert is set",
        "DIR/mt.toml:10: listeners[0].port: port must be 1-65535",
        "DIR/mt.toml:11: listeners[0].protocol: must be one of smtp, lmtp",
        "DIR/mt.toml:12: listeners[0].tls_cert: file not found: DIR/certs/missing.pem",
        "DIR/mt.toml:14: mail.reply_token_secret: still 'change-me' while a listener binds"
        " 0.0.0.0:70000; set a long random secret",
        "DIR/mt.toml:15: mail.support_addresses[1]: 'help+x@example.com' must not contain '+':"
        " plus-addressing carries reply tokens",
        "DIR/mt.toml:15: mail.support_addresses[2]: invalid address 'not an address'",
        "DIR/mt.toml:16: mail.default_locale: must be one of ru, en",
        "DIR/mt.toml:22: imap[0].address: 'other@example.com' is not one of"
        " mail.support_addresses (support@example.com)",
        "DIR/mt.toml:24: imap[0].password_file: file not found: DIR/secret.txt",
        "DIR/mt.toml:24: imap[0].password_file: set password or password_file, not both",
        "DIR/mt.toml:27: calendars.business.timezone: time zone 'Europe/Mosco' not found;"
        " did you mean Europe/Moscow?",
        "DIR/mt.toml:28: calendars.business.mon[0]: interval 20:00-08:00 ends before it starts"
        " (split a night shift at midnight)",
        "DIR/mt.toml:29: calendars.business.tue[1]: intervals 08:00-13:00 and 12:00-20:00 overlap",
        "DIR/mt.toml:31: sla_plans.standard.technical: missing; every plan needs"
        " critical, major, minor, technical",
        "DIR/mt.toml:32: sla_plans.standard.warn_ratio: must be between 0 and 1, such as 0.75",
        "DIR/mt.toml:35: sla_plans.standard.critical.first_response:"
        " expected a duration like 30m, 4h, 2d, got '4 hours'",
        "DIR/mt.toml:37: sla_plans.standard.critical.calendar:"
        " unknown calendar '24x7' (calendars are: business)",
        'DIR/mt.toml:51: engineers."anna@example.com".line: must be one of L1, L2, L3, L4',
        "DIR/mt.toml:55: contracts[0].sla_plan: unknown SLA plan 'gold' (plans are: standard)",
        "DIR/mt.toml:57: contracts[0].dedicated_engineer:"
        " unknown engineer 'x@y.example' (engineers are: anna@example.com)",
        "DIR/mt.toml:60: contracts[1].id: duplicate contract id 'acme' (also at line 54)",
        "DIR/mt.toml:63: contracts[1].locale: must be one of ru, en",
    ]


def test_load_raises_config_error_carrying_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    with pytest.raises(ConfigError) as caught:
        config.load(path, today=TODAY)
    assert len(caught.value.problems) == 26
    assert caught.value.exit_code == 2
    assert caught.value.problems[0] == ConfigProblem(
        str(path), 2, "daemon.workrs", "unknown key; did you mean workers?"
    )


def test_toml_syntax_error_is_one_problem_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[daemon]\nworkers = 2\nlog_level = \n")
    assert config.check(path) == [
        ConfigProblem(str(path), 3, "", "invalid TOML: Invalid value (column 13)")
    ]
    assert (
        format_problems(config.check(path)) == f"{path}:3: invalid TOML: Invalid value (column 13)"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert format_problems(config.check(path)) == f"{path}: file not found: {path}"


def test_unknown_keys_with_and_without_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[deamon]\nworkers = 1\n\n[relay]\nhots = "x"\nzzz = 1\n')
    assert problems(path) == [
        "DIR/mt.toml:1: deamon: unknown key; did you mean daemon?",
        "DIR/mt.toml:5: relay.hots: unknown key; did you mean host?",
        "DIR/mt.toml:6: relay.zzz: unknown key; expected one of host, port, tls, ca_file, username,"
        " password, maildir, timeout, max_attempts, retry_base_seconds, retry_max_seconds",
    ]


def test_wrong_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[daemon]\nworkers = "two"\npoll_interval = true\n[mail]\nadmin_addresses = "a@b.c"\n',
    )
    assert problems(path) == [
        "DIR/mt.toml:2: daemon.workers: expected an integer, got 'two'",
        "DIR/mt.toml:3: daemon.poll_interval: expected a number, got True",
        "DIR/mt.toml:5: mail.admin_addresses: expected a list of strings, got 'a@b.c'",
    ]


# --- durations, time zones, intervals ---------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30m", 30), ("4h", 240), ("2d", 2880), ("1h30m", 90), ("90", 90), (90, 90), ("2H", 120)],
)
def test_parse_duration(text: object, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["", "4 hours", "h", "1.5h", "-5m", True, 1.5])
def test_parse_duration_rejects(text: object) -> None:
    assert parse_duration(text) is None


def test_calendar_mistakes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
[calendars.a]
mon = ["08:00-24:00"]
tue = ["8-20", "10:00-10:00"]
wed = "08:00-20:00"
holidays = ["2025-13-01", 2025-12-31T10:00:00]

[calendars.b]
timezone = "UTC"
always_open = true
mon = ["08:00-20:00"]

[calendars.c]
timezone = "Europe/Moscow"
country = "XX"

[calendars.d]
timezone = "Europe/Moscow"
sat = ["10:00-14:00"]
holidays = [2025-05-10]
extra_working_days = [2025-05-10]
""",
    )
    assert problems(path) == [
        "DIR/mt.toml:1: calendars.a.timezone: missing required key"
        " (a time zone such as Europe/Moscow)",
        "DIR/mt.toml:1: calendars.a: no working hours: give intervals for mon…sun"
        " or set always_open = true",
        "DIR/mt.toml:2: calendars.a.mon[0]: 24:00 is not a time of day;"
        " end at 23:59 or set always_open = true",
        "DIR/mt.toml:3: calendars.a.tue[0]: expected an interval like 08:00-20:00, got '8-20'",
        "DIR/mt.toml:3: calendars.a.tue[1]: interval 10:00-10:00 is empty",
        "DIR/mt.toml:4: calendars.a.wed: expected a list like [\"08:00-20:00\"], got '08:00-20:00'",
        "DIR/mt.toml:5: calendars.a.holidays[0]: expected a date like 2025-12-31, got '2025-13-01'",
        "DIR/mt.toml:5: calendars.a.holidays[1]:"
        " expected a date like 2025-12-31, got datetime.datetime(2025, 12, 31, 10, 0)",
        "DIR/mt.toml:9: calendars.b.always_open: cannot be combined with weekly hours (mon…sun)",
        "DIR/mt.toml:12: calendars.c: no working hours: give intervals for mon…sun"
        " or set always_open = true",
        "DIR/mt.toml:14: calendars.c.country: no national calendar for country 'XX';"
        " use a code such as RU",
        "DIR/mt.toml:16: calendars.d.extra_day_hours:"
        " required for extra_working_days because mon has no hours",
        "DIR/mt.toml:20: calendars.d.extra_working_days: 2025-05-10 is also listed in holidays",
    ]


def test_admin_lists_override_the_national_calendar(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
[calendars.msk]
timezone = "Europe/Moscow"
country = "ru"
mon = ["09:00-13:00", "14:00-18:00"]
fri = ["09:00-17:00"]
holidays = [2025-11-01, "2025-12-30"]
extra_working_days = [2025-11-03]
extra_day_hours = ["10:00-16:00"]
""",
    )
    calendar = config.load(path, today=TODAY).calendars["msk"]
    assert calendar.week[0] == (
        Interval(time(9, 0), time(13, 0)),
        Interval(time(14, 0), time(18, 0)),
    )
    # The admin worked Monday 3 November and rested on the decreed working Saturday.
    assert calendar.country == "RU"
    assert calendar.holidays == {date(2025, 11, 1), date(2025, 12, 30)}
    assert calendar.extra_working_days == {date(2025, 11, 3)}
    assert calendar.extra_day_hours == (Interval(time(10, 0), time(16, 0)),)
    assert day_hours(calendar, date(2025, 11, 3)) == (Interval(time(10, 0), time(16, 0)),)
    assert day_hours(calendar, date(2025, 11, 1)) == ()
    assert day_hours(calendar, date(2025, 12, 30)) == ()
    assert day_hours(calendar, date(2025, 11, 4)) == ()


def test_dated_hours_and_a_24x7_display_zone(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
[calendars.msk]
timezone = "Europe/Moscow"
country = "RU"
mon = ["08:00-20:00"]
fri = ["08:00-20:00"]

[calendars.msk.days]
"2026-04-30" = ["08:00-19:00"]
2026-05-04 = []
"2026-05-09" = ["10:00-12:00", "13:00-14:00"]

[calendars.always]
always_open = true
timezone = "Asia/Vladivostok"
""",
    )
    calendars = config.load(path, today=TODAY).calendars
    msk = calendars["msk"]
    assert dict(msk.days) == {
        date(2026, 4, 30): (Interval(time(8, 0), time(19, 0)),),
        date(2026, 5, 4): (),
        date(2026, 5, 9): (Interval(time(10, 0), time(12, 0)), Interval(time(13, 0), time(14, 0))),
    }
    assert day_hours(msk, date(2026, 4, 30)) == (Interval(time(8, 0), time(19, 0)),)
    assert day_hours(msk, date(2026, 5, 4)) == ()
    assert calendars["always"] == Calendar(
        id="always", timezone="Asia/Vladivostok", week=((),) * 7, always_open=True
    )


def test_dated_hours_mistakes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
[calendars.a]
timezone = "Europe/Moscow"
mon = ["08:00-20:00"]
holidays = [2026-05-04]
extra_working_days = [2026-05-09]
days = { "2026-04-31" = [], "2026-05-04" = [], "2026-05-09" = ["08:00"], "2026-05-12" = "08:00-19:00" }

[calendars.b]
timezone = "Europe/Moscow"
mon = ["08:00-20:00"]
days = ["2026-04-30"]

[calendars.c]
always_open = true
country = "RU"
holidays = [2026-05-04]

[calendars.c.days]
2026-04-30 = ["08:00-19:00"]
""",
    )
    assert problems(path) == [
        "DIR/mt.toml:6: calendars.a.days.2026-04-31:"
        " expected a date like 2026-04-30 as the key, got '2026-04-31'",
        "DIR/mt.toml:6: calendars.a.days.2026-05-09[0]:"
        " expected an interval like 08:00-20:00, got '08:00'",
        "DIR/mt.toml:6: calendars.a.days.2026-05-12:"
        ' expected a list like ["08:00-20:00"], got \'08:00-19:00\'',
        "DIR/mt.toml:6: calendars.a.days.2026-05-04:"
        " 2026-05-04 is also listed in holidays; give it in one place",
        "DIR/mt.toml:6: calendars.a.days.2026-05-09:"
        " 2026-05-09 is also listed in extra_working_days; give it in one place",
        "DIR/mt.toml:11: calendars.b.days:"
        ' expected a table like { "2026-04-30" = ["08:00-19:00"] }, got a list',
        "DIR/mt.toml:15: calendars.c.country:"
        " cannot be combined with always_open: every minute counts",
        "DIR/mt.toml:16: calendars.c.holidays:"
        " cannot be combined with always_open: every minute counts",
        "DIR/mt.toml:18: calendars.c.days:"
        " cannot be combined with always_open: every minute counts",
    ]


RU_CALENDAR = """\
[calendars.msk]
timezone = "Europe/Moscow"
country = "RU"
mon = ["08:00-20:00"]

[calendars.local]
timezone = "Europe/Moscow"
mon = ["08:00-20:00"]
"""


def test_a_missing_decree_is_a_warning_not_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, RU_CALENDAR)
    # The last year whose decree the installed package knows; it grows with upgrades.
    known = max(year for year in range(2026, 2101) if has_decree("RU", year))
    # This year's decree is known, and next year's is not due before October.
    assert config.load(path, today=date(known, 9, 30)).warnings == ()
    # From October on next year's counts: it is usually signed by then.
    (warning,) = config.load(path, today=date(known, 10, 1)).warnings
    assert warning.reason.startswith(f"holidays {package_version()} has no RU decree"
                                     f" of moved days off for {known + 1}: ")
    # A year without its own decree: a warning, never an error.
    assert config.check(path, today=date(known + 1, 9, 30)) == []
    cfg = config.load(path, today=date(known + 1, 9, 30))
    assert [str(w).replace(str(tmp_path), "DIR") for w in cfg.warnings] == [
        f"DIR/mt.toml:3: calendars.msk.country: holidays {package_version()} has no RU decree"
        f" of moved days off for {known + 1}: weekend holidays are not moved and no Saturday"
        " is worked; upgrade the holidays package (or list that year's days in holidays,"
        " extra_working_days or [calendars.msk.days])"
    ]
    (late,) = config.load(path, today=date(known + 1, 10, 1)).warnings
    assert f"for {known + 1}, {known + 2}:" in late.reason


# --- references between sections ------------------------------------------

REFERENCES = """\
[mail]
support_addresses = ["Support@Example.com"]

[calendars.biz]
timezone = "Europe/Moscow"
mon = ["08:00-20:00"]

[sla_plans.gold]
calendar = "biz"
critical = { first_response = "1h", resolution = "30m", calendar = "nope" }
major = { first_response = "1h", resolution = "1d" }
minor = { first_response = "0m", resolution = "1d", calendar = "biz" }
technical = { resolution = "1d" }

[[engineers]]
address = "Anna@Example.com"
name = "Anna"
line = "l2"

[[engineers]]
address = "anna@example.com"
name = "Anna again"
line = "L1"

[[engineers]]
address = "support@example.com"
name = "Robot"
line = "L1"

[[contracts]]
id = "acme"
sla_plan = "gold"
contacts = ["Boss@Acme.Example", "anna@example.com"]
domains = ["ACME.example", "bad_domain!"]
dedicated_engineer = "anna@example.com"
deputy_engineer = "ANNA@example.com"

[[contracts]]
id = "beta corp"
sla_plan = "gold"
contacts = ["boss@acme.example"]
domains = ["acme.example"]

[[contracts]]
id = "empty"
sla_plan = "gold"
"""


def test_dangling_references_and_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, REFERENCES)
    assert problems(path) == [
        "DIR/mt.toml:10: sla_plans.gold.critical.first_response:"
        " is longer than resolution (60 > 30 minutes)",
        "DIR/mt.toml:10: sla_plans.gold.critical.calendar:"
        " unknown calendar 'nope' (calendars are: biz)",
        "DIR/mt.toml:12: sla_plans.gold.minor.first_response: must be longer than 0",
        "DIR/mt.toml:13: sla_plans.gold.technical.first_response: missing required key",
        "DIR/mt.toml:21: engineers[1].address: duplicate engineer 'anna@example.com'"
        " (also at line 16)",
        "DIR/mt.toml:26: engineers[2].address: 'support@example.com' is a support address,"
        " not an engineer",
        "DIR/mt.toml:33: contracts[0].contacts[1]: 'anna@example.com' is an engineer"
        " or support address",
        "DIR/mt.toml:34: contracts[0].domains[1]: invalid domain 'bad_domain!'",
        "DIR/mt.toml:36: contracts[0].deputy_engineer: is the same engineer as dedicated_engineer",
        "DIR/mt.toml:39: contracts[1].id: must be letters, digits, '.', '_' or '-'",
        "DIR/mt.toml:41: contracts[1].contacts[0]: duplicate address 'boss@acme.example'"
        " (also at line 33)",
        "DIR/mt.toml:42: contracts[1].domains[0]: duplicate domain 'acme.example'"
        " (also at line 34)",
        "DIR/mt.toml:44: contracts[2]: no contacts or domains:"
        " nobody could open a ticket under this contract",
    ]


def test_references_resolve_case_insensitively(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
[calendars.all]
always_open = true

[sla_plans.p]
calendar = "all"
critical = { first_response = "30m", resolution = "4h" }
major = { first_response = 60, resolution = "90" }
minor = { first_response = "1d", resolution = "2d" }
technical = { first_response = "1d", resolution = "2d", next_response = "1d" }

[engineers."Anna@Example.COM"]
name = "Anna"
line = "l2"

[contracts.acme]
sla_plan = "p"
contacts = ["Boss@Acme.Example"]
domains = ["@ACME.example"]
dedicated_engineer = "ANNA@example.com"
""",
    )
    cfg = config.load(path, today=TODAY)
    assert cfg.engineers == {"anna@example.com": Engineer("anna@example.com", "Anna", Line.L2)}
    assert cfg.contracts["acme"] == Contract(
        id="acme",
        name="acme",
        sla_plan="p",
        contacts=("boss@acme.example",),
        domains=("acme.example",),
        dedicated_engineer="anna@example.com",
    )
    assert cfg.sla_plans["p"].targets[Priority.MAJOR] == PriorityTargets(60, 90, "all")
    assert cfg.sla_plans["p"].targets[Priority.TECHNICAL] == PriorityTargets(
        1440, 2880, "all", next_response_minutes=1440
    )


# --- paths and secrets ------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc" / "mailticket"
    write(conf_dir, "cert", "tls/mail.pem")
    write(conf_dir, "key", "tls/mail.key")
    write(conf_dir, "pw\n", "imap.secret")
    write(conf_dir, "ca", "../ca.pem")
    path = write(
        conf_dir,
        """\
[daemon]
data_dir = "state"
templates_dir = "/usr/share/mailticket/templates"

[database]
url = "sqlite:///db/mt.db?timeout=5"

[[listeners]]
host = "127.0.0.1"
port = 2587
submission = true
tls_cert = "tls/mail.pem"
tls_key = "tls/mail.key"
max_connections = 7
max_connections_per_ip = 7
require_starttls = true

[relay]
maildir = "../spool/out"
tls = "starttls"
ca_file = "../ca.pem"

[[imap]]
name = "box"
host = "imap.example.com"
user = "support"
address = "support@example.com"
password_file = "imap.secret"
ca_file = "../ca.pem"
""",
    )
    monkeypatch.chdir(tmp_path)
    cfg = config.load(Path("etc/mailticket/mt.toml"), today=TODAY)
    assert cfg.path == path
    assert cfg.daemon.data_dir == conf_dir / "state"
    assert cfg.templates_dir == Path("/usr/share/mailticket/templates")
    assert cfg.database.url == f"sqlite:///{conf_dir}/db/mt.db?timeout=5"
    assert cfg.listeners[0].tls_cert == conf_dir / "tls" / "mail.pem"
    assert cfg.listeners[0].tls_key == conf_dir / "tls" / "mail.key"
    assert (
        cfg.listeners[0].max_connections,
        cfg.listeners[0].max_connections_per_ip,
        cfg.listeners[0].require_starttls,
    ) == (7, 7, True)
    assert cfg.relay.maildir == tmp_path / "etc" / "spool" / "out"
    assert cfg.relay.ca_file == tmp_path / "etc" / "ca.pem"
    assert cfg.imap == (
        ImapAccountConfig(
            name="box",
            host="imap.example.com",
            user="support",
            address="support@example.com",
            password_file=conf_dir / "imap.secret",
            ca_file=tmp_path / "etc" / "ca.pem",
        ),
    )


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/mailticket/mt.db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql+psycopg://mt@127.0.0.1/mt",
    ],
)
def test_absolute_and_special_database_urls_are_kept(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[database]\nurl = "{url}"\n')
    assert config.load(path, today=TODAY).database.url == url


def test_imap_password_or_password_file(tmp_path: Path) -> None:
    write(tmp_path, "pw\n", "pw.txt")
    account = (
        '[[imap]]\nname = "{name}"\nhost = "127.0.0.1"\nuser = "u"\n'
        'address = "support@example.com"\n'
    )
    path = write(
        tmp_path,
        account.format(name="both")
        + 'password = "p"\npassword_file = "pw.txt"\n\n'
        + account.format(name="neither")
        + 'tls = "none"\n\n'
        + account.format(name="gone")
        + 'password_file = "gone.txt"\n\n'
        + account.format(name="plain").replace("127.0.0.1", "imap.example.com")
        + 'password = "p"\ntls = "none"\n',
    )
    assert problems(path) == [
        "DIR/mt.toml:7: imap[0].password_file: set password or password_file, not both",
        "DIR/mt.toml:9: imap[1]: missing password or password_file",
        "DIR/mt.toml:21: imap[2].password_file: file not found: DIR/gone.txt",
        'DIR/mt.toml:29: imap[3].tls: tls = "none" is allowed only for a loopback host',
    ]


def test_reply_token_secret_must_change_before_binding_a_public_address(tmp_path: Path) -> None:
    public = '[[listeners]]\nhost = "0.0.0.0"\nport = 25\nprotocol = "lmtp"\n'
    assert problems(write(tmp_path, public)) == [
        "DIR/mt.toml:1: mail.reply_token_secret: still 'change-me' while a listener binds"
        " 0.0.0.0:25; set a long random secret",
    ]
    changed = public + '[mail]\nreply_token_secret = "0123456789abcdef0123456789"\n'
    assert config.check(write(tmp_path, changed), today=TODAY) == []


def test_listener_and_relay_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
[[listeners]]
port = 2525

[[listeners]]
port = 2525
protocol = "lmtp"
submission = true

[[listeners]]
host = "::1"
port = 2526
max_recipients = 0

[relay]
host = "smtp.example.com"
username = "mt"
password = "pw"
retry_base_seconds = 60
retry_max_seconds = 10
""",
    )
    assert problems(path) == [
        "DIR/mt.toml:5: listeners[1].port: 127.0.0.1:2525 is already used (line 2)",
        'DIR/mt.toml:7: listeners[1].submission: requires protocol = "smtp"',
        "DIR/mt.toml:12: listeners[2].max_recipients: must be at least 1",
        "DIR/mt.toml:14: relay.tls: would send the password in clear text;"
        ' use "starttls" or "implicit"',
        "DIR/mt.toml:19: relay.retry_max_seconds: must be at least retry_base_seconds (60)",
    ]


def test_connection_limits_starttls_and_relay_ca_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
[[listeners]]
port = 2525
max_connections = 0
max_connections_per_ip = -1

[[listeners]]
port = 2526
max_connections = 5
max_connections_per_ip = 6
require_starttls = true

[[listeners]]
port = 2527
require_starttls = "yes"

[relay]
ca_file = "missing-ca.pem"
""",
    )
    assert problems(path) == [
        "DIR/mt.toml:3: listeners[0].max_connections: must be at least 1",
        "DIR/mt.toml:4: listeners[0].max_connections_per_ip: must be at least 1",
        "DIR/mt.toml:9: listeners[1].max_connections_per_ip: must not exceed max_connections (5)",
        "DIR/mt.toml:10: listeners[1].require_starttls: needs tls_cert and tls_key to offer"
        " STARTTLS",
        "DIR/mt.toml:14: listeners[2].require_starttls: expected true or false, got 'yes'",
        "DIR/mt.toml:17: relay.ca_file: file not found: DIR/missing-ca.pem",
        'DIR/mt.toml:17: relay.ca_file: is used only with tls = "starttls" or "implicit"',
    ]


# --- locating keys ----------------------------------------------------------


def test_locator_finds_dotted_inline_and_multiline_keys() -> None:
    text = """\
# comment [not.a.table]
title = '''
[fake]
x = 1
'''
a.b.c = 1
"quoted.key" = { inner = 2, deeper = { z = 3 } }
list = [
  "one",  # comment ]
  { id = "two" },
]
[[t]]
k = 1
[[t]]
k = 2
[t.sub]
m = 3
[[t.items]]
n = 4
"""
    locator = Locator(text)
    assert locator.line_of(("a", "b", "c")) == 6
    assert locator.line_of(("quoted.key", "deeper", "z")) == 7
    assert locator.line_of(("list", 1, "id")) == 10
    assert locator.line_of(("list", 0)) == 9
    assert locator.line_of(("t", 1, "k")) == 15
    assert locator.line_of(("t", 1, "sub", "m")) == 17
    assert locator.line_of(("t", 1, "items", 0, "n")) == 19
    assert locator.line_of(("t", 1, "missing")) == 14
    assert locator.line_of(("fake",)) == 1
    assert locator.line_of(("nowhere", "x")) == 1


def test_admin_digest_settings_are_bounded(tmp_path: Path) -> None:
    """Issue 15: the failure digest's interval is 1 minute to a day; the relay alert at least 1."""
    path = write(tmp_path, """
[mail]
admin_addresses = ["admin@example.com"]
admin_digest_minutes = 0
relay_alert_minutes = 0
""")
    assert problems(path) == [
        "DIR/mt.toml:4: mail.admin_digest_minutes: must be at least 1",
        "DIR/mt.toml:5: mail.relay_alert_minutes: must be at least 1",
    ]
    path = write(tmp_path, '[mail]\nadmin_digest_minutes = 1441\n')
    assert problems(path) == ["DIR/mt.toml:2: mail.admin_digest_minutes: must be at most 1440 (a day)"]
    cfg = config.load(write(tmp_path, '[mail]\nadmin_digest_minutes = 15\n'), today=TODAY)
    assert (cfg.mail.admin_digest_minutes, cfg.mail.relay_alert_minutes) == (15, 30)
    assert config.load(EXAMPLE, today=TODAY).mail.admin_digest_minutes == 60


# --- issue 15: mail.from_address and the greeting hostname ---------------------


def test_from_address_defaults_to_the_first_support_address(tmp_path: Path) -> None:
    path = write(tmp_path, '[mail]\nsupport_addresses = ["help@a.example", "desk@b.example"]\n')
    cfg = config.load(path, today=TODAY)
    assert cfg.mail.from_address == ""
    assert cfg.mail.sender_address == "help@a.example"
    assert cfg.warnings == ()


def test_from_address_set_explicitly_wins_over_the_order_of_support_addresses(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[mail]\nsupport_addresses = ["imap@a.example", "desk@b.example"]\n'
                           'from_address = "Desk@B.example"\n')
    cfg = config.load(path, today=TODAY)
    assert cfg.mail.sender_address == "desk@b.example"
    assert cfg.warnings == ()


def test_from_address_outside_the_support_addresses_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, '[mail]\nsupport_addresses = ["help@a.example"]\n'
                           'from_address = "noreply@a.example"\n')
    cfg = config.load(path, today=TODAY)
    assert cfg.mail.sender_address == "noreply@a.example"
    [warning] = [str(w).replace(str(tmp_path), "DIR") for w in cfg.warnings]
    assert warning.startswith("DIR/mt.toml:3: mail.from_address: 'noreply@a.example' is not one "
                              "of mail.support_addresses")


@pytest.mark.parametrize(("value", "reason"), [
    ('"not an address"', "invalid address 'not an address'"),
    ('"help+x@a.example"', "must not contain '+'"),
])
def test_bad_from_address_is_a_problem(tmp_path: Path, value: str, reason: str) -> None:
    path = write(tmp_path, f'[mail]\nfrom_address = {value}\n')
    [problem] = problems(path)
    assert problem.startswith("DIR/mt.toml:2: mail.from_address")
    assert reason in problem


def test_listener_greeting_hostname(tmp_path: Path) -> None:
    path = write(tmp_path, '[[listeners]]\nhostname = "mx.provider.example"\n')
    [listener] = config.load(path, today=TODAY).listeners
    assert listener.hostname == "mx.provider.example"
    bad = write(tmp_path, '[[listeners]]\nhostname = "mx provider"\n', name="bad.toml")
    [problem] = problems(bad)
    assert problem.startswith("DIR/bad.toml:2: listeners[0].hostname: invalid domain")
