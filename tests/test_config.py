"""feeds.yaml loading: defaults, the bundled file, and one test per kind of problem,
each pinning the line, the column and the key path the message names."""

from __future__ import annotations

import re
import textwrap
from datetime import time, timedelta
from pathlib import Path

import pytest

from monitor.config import (
    DEFAULT_USER_AGENT,
    Config,
    EmailChannel,
    LogChannel,
    Settings,
    WebhookChannel,
    check_config,
    default_config_path,
    load_config,
)
from monitor.durations import format_duration, format_size, parse_duration, parse_size
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FEED = "https://example.org/feed.xml"


def write(tmp_path: Path, text: str, name: str = "feeds.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def check(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> tuple[Config | None, list[str], list[str]]:
    return check_config(write(tmp_path, text), env=env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    config, found, _ = check(tmp_path, text, env)
    assert config is None
    assert found, "expected at least one problem"
    return found


def assert_problem(
    found: list[str], tmp_path: Path, line: int, col: int, where: str, text: str
) -> None:
    prefix = f"{tmp_path / 'feeds.yaml'}:{line}:{col}: {where}: "
    matching = [p for p in found if p.startswith(prefix)]
    assert matching, f"no problem at {line}:{col} for {where} in {found}"
    assert any(text in p for p in matching), f"{text!r} not in {matching}"


# ---------------------------------------------------------------- valid configs


def test_minimal_config_gets_every_default(tmp_path):
    config = load_config(write(tmp_path, f"version: 1\nfeeds:\n  - url: {FEED}\n"), env={})
    s = config.settings
    assert s.database == f"sqlite:///{tmp_path / 'monitor.db'}"
    assert s.poll_interval == timedelta(minutes=15)
    assert s.min_interval == timedelta(minutes=1)
    assert s.max_interval == timedelta(hours=1)
    assert (s.concurrency, s.per_host) == (32, 2)
    assert s.timeout == timedelta(seconds=30)
    assert s.max_feed_bytes == 10 * 1024 * 1024
    assert s.user_agent == DEFAULT_USER_AGENT
    assert s.user_agent.startswith("feed-monitor/0.1.0 (+https://github.com/")
    assert s.story_window == timedelta(hours=72)
    assert s.retention == timedelta(days=90)
    assert s.alert_backlog is False
    assert s.broken_after == timedelta(hours=24)
    assert s.stale_after == timedelta(days=7)
    assert s.http is None
    (feed,) = config.feeds
    assert (feed.url, feed.name, feed.interval, feed.tags, feed.enabled) == (
        FEED,
        None,
        None,
        (),
        True,
    )
    assert config.entities == () and config.alerts == ()
    assert config.path == tmp_path / "feeds.yaml"
    assert config.feed_by_url(FEED) is feed
    assert config.feed_by_url("HTTPS://EXAMPLE.ORG/feed.xml") is feed
    assert config.feed_by_url("https://example.org/other") is None


def test_sections_may_be_empty_and_version_defaults_to_1(tmp_path):
    config = load_config(write(tmp_path, "settings:\nfeeds:\nentities:\nalerts:\n"), env={})
    assert config.feeds == () and config.settings == Settings(database=config.settings.database)


def test_full_config_parses_every_key(tmp_path):
    path = write(
        tmp_path,
        f"""
        version: 1
        settings:
          poll_interval: 10m
          min_interval: 500ms
          max_interval: 1h30m
          timeout: 45
          max_feed_bytes: 512KB
          retention: never
          alert_backlog: true
          http: {{host: 0.0.0.0, port: 8787}}
        feeds:
          - url: {FEED}
            name: Example
            interval: 2m
            tags: [iran, russia]
            enabled: false
        entities:
          - name: Wagner Group
            aliases: [Wagner PMC, {{text: PMC Wagner, case: exact}}]
            exclude: [Richard Wagner]
        alerts:
          - name: desk-email
            type: email
            to: [desk@example.org]
            from: Feed Monitor <monitor@example.org>
            smtp: {{host: localhost, port: 2525, security: starttls, username: u, password: p}}
            entities: [Wagner Group]
            tags: [russia]
            max_per_hour: 30
            digest: 1d
            digest_at: "08:00 Europe/Berlin"
            feed_health: true
          - name: desk-hook
            type: webhook
            url: https://hooks.example.org/monitor
            headers: {{X-Team: desk}}
            timeout: 5s
          - {{name: log, type: log}}
        """,
    )
    config = load_config(path, env={})
    s = config.settings
    assert s.min_interval == timedelta(milliseconds=500)
    assert s.max_interval == timedelta(minutes=90)
    assert s.timeout == timedelta(seconds=45)
    assert s.max_feed_bytes == 512 * 1024
    assert s.retention is None and s.alert_backlog is True
    assert s.http is not None and (s.http.host, s.http.port) == ("0.0.0.0", 8787)
    feed = config.feeds[0]
    assert (feed.name, feed.interval, feed.tags, feed.enabled) == (
        "Example",
        timedelta(minutes=2),
        ("iran", "russia"),
        False,
    )
    wagner = config.entities[0]
    assert [(a.text, a.case) for a in wagner.aliases] == [
        ("Wagner PMC", "ignore"),
        ("PMC Wagner", "exact"),
    ]
    assert wagner.exclude == ("Richard Wagner",)
    assert [a.text for a in wagner.terms] == ["Wagner Group", "Wagner PMC", "PMC Wagner"]
    email = config.channel("desk-email")
    assert isinstance(email, EmailChannel)
    assert email.to == ("desk@example.org",) and email.from_ == "Feed Monitor <monitor@example.org>"
    assert (email.smtp.host, email.smtp.port, email.smtp.security) == (
        "localhost",
        2525,
        "starttls",
    )
    assert email.smtp.password is not None and email.smtp.password.get_secret_value() == "p"
    assert email.smtp.timeout == timedelta(seconds=45)  # from settings.timeout
    assert email.entities == ("Wagner Group",) and email.tags == ("russia",)
    assert (email.max_per_hour, email.digest, email.feed_health) == (30, timedelta(days=1), True)
    assert email.digest_at is not None
    assert email.digest_at.at == time(8, 0) and email.digest_at.zone == "Europe/Berlin"
    assert str(email.digest_at) == "08:00 Europe/Berlin"
    assert email.digest_at.tzinfo.key == "Europe/Berlin"
    hook = config.channel("desk-hook")
    assert isinstance(hook, WebhookChannel)
    assert hook.timeout == timedelta(seconds=5) and hook.secret is None
    assert {k: v.get_secret_value() for k, v in hook.headers.items()} == {"X-Team": "desk"}
    log = config.channel("log")
    assert isinstance(log, LogChannel) and log.path is None and log.entities is None
    assert config.channel("nope") is None
    assert config.entity("Wagner Group") is wagner


def test_smtp_port_defaults_follow_security(tmp_path):
    channels = "\n".join(
        f"  - {{name: m{sec}, type: email, to: a@b.org, from: c@d.org, smtp: {{security: {sec}}}}}"
        for sec in ("none", "starttls", "ssl")
    )
    config = load_config(write(tmp_path, f"alerts:\n{channels}\n"), env={})
    ports = [c.smtp.port for c in config.alerts if isinstance(c, EmailChannel)]
    assert ports == [25, 587, 465]


def test_bundled_feeds_yaml_validates_cleanly():
    config, found, warnings = check_config(ROOT / "feeds.yaml", env={})
    assert found == [] and warnings == []
    assert config is not None
    urls = {feed.url for feed in config.feeds}
    assert {"https://en.mehrnews.com/rss", "https://tass.com/rss/v2.xml"} <= urls
    assert len(config.feeds) >= 10
    wagner = config.entity("Wagner Group")
    assert wagner is not None and "Richard Wagner" in wagner.exclude
    assert ("PMC Wagner", "exact") in [(a.text, a.case) for a in wagner.aliases]
    log = config.channel("log")
    assert isinstance(log, LogChannel) and log.path == ROOT / "alerts.jsonl"
    assert config.settings.database == f"sqlite:///{ROOT / 'monitor.db'}"


def test_bundled_commented_examples_validate_when_uncommented(tmp_path):
    text = (ROOT / "feeds.yaml").read_text(encoding="utf-8")
    head, _, channels = text.partition("\nalerts:\n")
    channels = re.sub(r"(?m)^  # (?=[ -])", "  ", channels)
    path = tmp_path / "feeds.yaml"
    path.write_text(f"{head}\nalerts:\n{channels}", encoding="utf-8")
    env = {"WEBHOOK_SECRET": "s3cret", "SMTP_PASSWORD": "pw"}
    config = load_config(path, env=env)
    assert [c.type for c in config.alerts] == ["log", "webhook", "email"]


# ---------------------------------------------------------------- problems, with their place


@pytest.mark.parametrize(
    ("text", "line", "col", "where", "hint"),
    [
        ("verison: 1\n", 1, 1, "verison", "did you mean 'version'?"),
        ("settings:\n  poll_intervall: 5m\n", 2, 3, "settings.poll_intervall", "poll_interval"),
        (
            f"feeds:\n  - url: {FEED}\n  - url: {FEED}2\n    urll: x\n",
            4,
            5,
            "feeds[1].urll",
            "did you mean 'url'?",
        ),
        (
            "alerts:\n  - name: log\n    type: log\n    feed_heath: true\n",
            4,
            5,
            "alerts[0].feed_heath",
            "feed_health",
        ),
        (
            "alerts:\n  - {name: m, type: email, to: a@b.org, from: c@d.org, smtp: {hots: x}}\n",
            2,
            63,
            "alerts[0].smtp.hots",
            "host",
        ),
    ],
)
def test_unknown_key(tmp_path, text, line, col, where, hint):
    found = problems(tmp_path, text)
    assert_problem(found, tmp_path, line, col, where, "unknown key")
    assert_problem(found, tmp_path, line, col, where, hint)


def test_bad_duration(tmp_path):
    found = problems(tmp_path, "version: 1\nsettings:\n  poll_interval: 15 minutes\n")
    assert found == [
        f"{tmp_path / 'feeds.yaml'}:3:18: settings.poll_interval: invalid duration "
        "'15 minutes' (use e.g. 500ms, 30s, 15m, 2h, 1d)"
    ]


def test_zero_duration_is_rejected(tmp_path):
    found = problems(tmp_path, "settings:\n  timeout: 0s\n")
    assert_problem(found, tmp_path, 2, 12, "settings.timeout", "longer than zero")


def test_bad_size(tmp_path):
    found = problems(tmp_path, "settings:\n  max_feed_bytes: 10 megs\n")
    assert_problem(found, tmp_path, 2, 19, "settings.max_feed_bytes", "invalid size '10 megs'")


def test_non_http_url(tmp_path):
    found = problems(tmp_path, "feeds:\n  - url: ftp://example.org/feed\n")
    assert_problem(found, tmp_path, 2, 10, "feeds[0].url", "not an http or https URL")


def test_webhook_url_must_be_http(tmp_path):
    found = problems(tmp_path, "alerts:\n  - name: h\n    type: webhook\n    url: file:///x\n")
    assert_problem(found, tmp_path, 4, 10, "alerts[0].url", "not an http or https URL")


def test_missing_required_key_points_at_its_parent(tmp_path):
    found = problems(tmp_path, f"feeds:\n  - url: {FEED}\n  - name: no url\n")
    assert_problem(found, tmp_path, 3, 5, "feeds[1].url", "required key is missing")


def test_missing_environment_variable(tmp_path):
    text = """
    alerts:
      - name: hook
        type: webhook
        url: https://hooks.example.org/x
        secret: ${WEBHOOK_SECRET}
    """
    found = problems(tmp_path, text)
    assert found == [
        f"{tmp_path / 'feeds.yaml'}:5:13: alerts[0].secret: "
        "environment variable WEBHOOK_SECRET is not set"
    ]


def test_broken_yaml_syntax(tmp_path):
    found = problems(tmp_path, f"feeds:\n  - url: {FEED}\n    tags: [a, b\n  - url: x\n")
    assert len(found) == 1
    assert re.match(
        rf"{re.escape(str(tmp_path / 'feeds.yaml'))}:4:\d+: YAML syntax error: ", found[0]
    )


def test_yaml_syntax_error_hints_at_quoting_variables(tmp_path):
    found = problems(tmp_path, "alerts:\n  - {name: h, type: webhook, url: ${URL}}\n")
    assert "YAML syntax error" in found[0] and "quote a value that uses ${NAME}" in found[0]


def test_duplicate_yaml_key_is_a_syntax_problem(tmp_path):
    found = problems(tmp_path, "settings:\n  timeout: 5s\n  timeout: 6s\n")
    assert_problem([f"{p}" for p in found], tmp_path, 3, 3, "YAML syntax error", "duplicate key")


def test_duplicate_feed_url(tmp_path):
    found = problems(tmp_path, f"feeds:\n  - url: {FEED}\n  - url: {FEED}\n")
    assert_problem(found, tmp_path, 3, 10, "feeds[1].url", "duplicate feed URL")
    assert_problem(found, tmp_path, 3, 10, "feeds[1].url", "first at feeds[0], line 2")


def test_duplicate_entity_name(tmp_path):
    found = problems(tmp_path, "entities:\n  - name: NATO\n  - name: nato\n")
    assert_problem(found, tmp_path, 3, 11, "entities[1].name", "duplicate entity name")


def test_duplicate_channel_name(tmp_path):
    text = "alerts:\n  - {name: log, type: log}\n  - name: log\n    type: log\n"
    found = problems(tmp_path, text)
    assert_problem(found, tmp_path, 3, 11, "alerts[1].name", "duplicate channel name")


def test_channel_naming_unknown_entity(tmp_path):
    text = """
    entities:
      - name: Wagner Group
    alerts:
      - name: log
        type: log
        entities: [Wagner Group, Wagner Grup]
    """
    found = problems(tmp_path, text)
    assert found == [
        f"{tmp_path / 'feeds.yaml'}:6:30: alerts[0].entities[1]: unknown entity "
        "'Wagner Grup' (did you mean 'Wagner Group'?)"
    ]


def test_bad_digest_at_timezone(tmp_path):
    text = (
        "alerts:\n  - name: log\n    type: log\n    digest: 1d\n"
        '    digest_at: "08:00 Europe/Berln"\n'
    )
    found = problems(tmp_path, text)
    assert_problem(
        found, tmp_path, 5, 16, "alerts[0].digest_at", "unknown time zone 'Europe/Berln'"
    )
    assert_problem(found, tmp_path, 5, 16, "alerts[0].digest_at", "did you mean 'Europe/Berlin'?")


def test_bad_digest_at_time(tmp_path):
    text = "alerts:\n  - {name: log, type: log, digest: 1d, digest_at: 25:00}\n"
    found = problems(tmp_path, text)
    assert_problem(found, tmp_path, 2, 51, "alerts[0].digest_at", "invalid time of day '25:00'")


def test_digest_at_needs_digest(tmp_path):
    found = problems(tmp_path, "alerts:\n  - {name: log, type: log, digest_at: '08:00'}\n")
    assert_problem(found, tmp_path, 2, 39, "alerts[0].digest_at", "needs a digest period")


def test_feed_interval_below_min_interval(tmp_path):
    found = problems(
        tmp_path, f"settings:\n  min_interval: 2m\nfeeds:\n  - url: {FEED}\n    interval: 30s\n"
    )
    assert found == [
        f"{tmp_path / 'feeds.yaml'}:5:15: feeds[0].interval: interval 30s is shorter than "
        "settings.min_interval (2m)"
    ]


def test_min_interval_above_max_interval(tmp_path):
    found = problems(tmp_path, "settings:\n  min_interval: 2h\n")
    assert_problem(found, tmp_path, 2, 17, "settings.min_interval", "longer than max_interval (1h)")


@pytest.mark.parametrize(
    ("text", "line", "col", "where", "message"),
    [
        (
            "settings:\n  concurrency: many\n",
            2,
            16,
            "settings.concurrency",
            "expected a whole number, got 'many'",
        ),
        (
            "settings:\n  alert_backlog: maybe\n",
            2,
            18,
            "settings.alert_backlog",
            "expected true or false",
        ),
        ("settings: [1, 2]\n", 1, 1, "settings", "expected a mapping, got a list"),
        ("feeds:\n  url: x\n", 1, 1, "feeds", "expected a list, got a mapping"),
        (
            f"feeds:\n  - url: {FEED}\n    tags: {{a: 1}}\n",
            3,
            5,
            "feeds[0].tags",
            "expected a list",
        ),
        (
            "settings:\n  http: {port: 99999}\n",
            2,
            16,
            "settings.http.port",
            "must be at most 65535",
        ),
        (
            "alerts:\n  - {name: m, type: email, to: nobody, from: c@d.org}\n",
            2,
            32,
            "alerts[0].to[0]",
            "not an email address",
        ),
        (
            "alerts:\n  - {name: m, type: email, to: [], from: c@d.org}\n",
            2,
            28,
            "alerts[0].to",
            "must not be empty",
        ),
        (
            "alerts:\n  - name: x\n    type: sms\n",
            3,
            11,
            "alerts[0].type",
            "unknown channel type 'sms'",
        ),
        ("alerts:\n  - name: x\n", 2, 5, "alerts[0].type", "required key is missing"),
        (
            "entities:\n  - name: X Corp\n    aliases: [{text: X Corporation, case: sometimes}]\n",
            3,
            43,
            "entities[0].aliases[0].case",
            "expected 'exact' or 'ignore'",
        ),
        ("version: 2\n", 1, 10, "version", "unsupported version 2"),
        (
            "settings:\n  database: mysql://x/y\n",
            2,
            13,
            "settings.database",
            "unsupported database URL",
        ),
    ],
)
def test_wrong_type_or_value(tmp_path, text, line, col, where, message):
    assert_problem(problems(tmp_path, text), tmp_path, line, col, where, message)


def test_every_problem_is_collected_in_file_order(tmp_path):
    text = f"""
    bogus: 1
    settings:
      timeout: soon
    feeds:
      - url: gopher://x
      - url: {FEED}
        interval: 1s
    alerts:
      - {{name: a, type: log, entities: [Nobody]}}
    """
    found = problems(tmp_path, text)
    assert [p.split(": ")[1] for p in found] == [
        "bogus",
        "settings.timeout",
        "feeds[0].url",
        "feeds[1].interval",
        "alerts[0].entities[0]",
    ]
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines)


def test_empty_and_unreadable_files(tmp_path):
    assert problems(tmp_path, "") == [
        f"{tmp_path / 'feeds.yaml'}:1:1: the file is empty (keys: "
        "version, settings, feeds, entities, alerts)"
    ]
    config, found, _ = check_config(tmp_path / "missing.yaml", env={})
    assert config is None and "cannot read the config file" in found[0]
    (tmp_path / "latin1.yaml").write_bytes(b"feeds: []\n# caf\xe9\n")
    config, found, _ = check_config(tmp_path / "latin1.yaml", env={})
    assert found == [f"{tmp_path / 'latin1.yaml'}:2:6: not UTF-8 text"]


def test_load_config_raises_config_error_with_every_problem(tmp_path):
    path = write(tmp_path, "settings:\n  timeout: soon\n  per_host: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert len(caught.value.problems) == 2
    assert str(caught.value) == "\n".join(caught.value.problems)


# ---------------------------------------------------------------- warnings


def test_short_alias_warning(tmp_path):
    text = """
    entities:
      - name: United States
        aliases: [USA, {text: US, case: exact}, U.S.]
      - name: AP
    """
    config, found, warnings = check(tmp_path, text)
    assert config is not None and found == []
    name = tmp_path / "feeds.yaml"
    assert warnings == [
        f"{name}:3:15: entities[0].aliases[0]: alias 'USA' has 3 letters or fewer and matches "
        "ignoring case; write {text: USA, case: exact}",
        f"{name}:3:45: entities[0].aliases[2]: alias 'U.S.' has 3 letters or fewer and matches "
        "ignoring case; write {text: U.S., case: exact}",
        f"{name}:4:11: entities[1].name: the name 'AP' has 3 letters or fewer and matches "
        "ignoring case; use a longer name and add {text: AP, case: exact} as an alias",
    ]


def test_channel_tag_no_feed_has_is_a_warning(tmp_path):
    text = (
        f"feeds:\n  - {{url: {FEED}, tags: [iran]}}\n"
        "alerts:\n  - {name: l, type: log, tags: [irn]}\n"
    )
    config, found, warnings = check(tmp_path, text)
    assert config is not None and found == []
    assert warnings == [
        f"{tmp_path / 'feeds.yaml'}:4:33: alerts[0].tags[0]: no feed has the tag 'irn'"
    ]


# ---------------------------------------------------------------- environment, paths, secrets


def test_environment_interpolation(tmp_path):
    text = """
    settings:
      user_agent: monitor ${SITE} ($${NOT_A_VAR})
      http: {host: 127.0.0.1, port: "${PORT}"}
    alerts:
      - name: hook
        type: webhook
        url: https://${HOOK_HOST}/in
        secret: ${WEBHOOK_SECRET}
    """
    env = {"SITE": "desk", "PORT": "9000", "HOOK_HOST": "hooks.example.org", "WEBHOOK_SECRET": "k"}
    config = load_config(write(tmp_path, text), env=env)
    assert config.settings.user_agent == "monitor desk (${NOT_A_VAR})"
    assert config.settings.http is not None and config.settings.http.port == 9000
    hook = config.alerts[0]
    assert isinstance(hook, WebhookChannel)
    assert hook.url == "https://hooks.example.org/in"
    assert hook.secret is not None and hook.secret.get_secret_value() == "k"


def test_environment_defaults_to_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("FEED_HOST", "example.net")
    config = load_config(write(tmp_path, "feeds:\n  - url: https://${FEED_HOST}/rss\n"))
    assert config.feeds[0].url == "https://example.net/rss"


def test_values_from_the_environment_are_not_echoed(tmp_path):
    found = problems(tmp_path, "feeds:\n  - url: ${FEED_URL}\n", env={"FEED_URL": "tok-123"})
    assert_problem(found, tmp_path, 2, 10, "feeds[0].url", "not an http or https URL")
    assert "tok-123" not in found[0]


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    text = """
    settings:
      database: sqlite:///data/monitor.db?timeout=5
    alerts:
      - {name: rel, type: log, path: logs/alerts.jsonl}
      - {name: abs, type: log, path: /var/log/alerts.jsonl}
    """
    config = load_config(write(conf_dir, text), env={})
    assert config.settings.database == f"sqlite:///{conf_dir / 'data/monitor.db'}?timeout=5"
    paths = [c.path for c in config.alerts if isinstance(c, LogChannel)]
    assert paths == [conf_dir / "logs/alerts.jsonl", Path("/var/log/alerts.jsonl")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("'sqlite:///:memory:'", "sqlite:///:memory:"),
        ("sqlite:////abs/monitor.db", "sqlite:////abs/monitor.db"),
        ("postgresql+psycopg://user@db/monitor", "postgresql+psycopg://user@db/monitor"),
        ("postgresql://user:pw@db:5432/monitor", "postgresql+psycopg://user:pw@db:5432/monitor"),
    ],
)
def test_database_urls(tmp_path, url, expected):
    config = load_config(write(tmp_path, f"settings:\n  database: {url}\n"), env={})
    assert config.settings.database == expected


def test_secrets_never_show_in_repr_or_str(tmp_path):
    text = """
    alerts:
      - name: hook
        type: webhook
        url: https://hooks.example.org/x
        secret: ${WEBHOOK_SECRET}
        headers: {Authorization: Bearer hunter2-token}
      - name: mail
        type: email
        to: desk@example.org
        from: monitor@example.org
        smtp: {username: monitor, password: sw0rdfish-pw}
    """
    config = load_config(write(tmp_path, text), env={"WEBHOOK_SECRET": "wh-s3cret"})
    for shown in (repr(config), str(config), repr(config.alerts), str(config.alerts[1])):
        for secret in ("wh-s3cret", "hunter2-token", "sw0rdfish-pw"):
            assert secret not in shown
    hook, mail = config.alerts
    assert isinstance(hook, WebhookChannel) and isinstance(mail, EmailChannel)
    assert hook.secret is not None and hook.secret.get_secret_value() == "wh-s3cret"
    assert hook.headers["Authorization"].get_secret_value() == "Bearer hunter2-token"
    assert (
        mail.smtp.password is not None and mail.smtp.password.get_secret_value() == "sw0rdfish-pw"
    )


def test_a_bad_secret_is_not_echoed(tmp_path):
    text = (
        "alerts:\n  - name: h\n    type: webhook\n    url: https://x.org/\n    secret: [hunter2]\n"
    )
    found = problems(tmp_path, text)
    assert_problem(found, tmp_path, 5, 5, "alerts[0].secret", "expected text")
    assert "hunter2" not in found[0]


# ---------------------------------------------------------------- fingerprint, helpers


def test_fingerprint_is_stable_and_sees_every_change(tmp_path):
    text = (
        f"feeds:\n  - url: {FEED}\n"
        "alerts:\n  - {name: h, type: webhook, url: https://x.org/, secret: '${S}'}\n"
    )
    path = write(tmp_path, text)
    first = load_config(path, env={"S": "a"}).fingerprint()
    assert load_config(path, env={"S": "a"}).fingerprint() == first
    assert load_config(path, env={"S": "b"}).fingerprint() != first
    path.write_text(text + "settings: {timeout: 31s}\n")
    assert load_config(path, env={"S": "a"}).fingerprint() != first


def test_with_settings_replaces_settings(tmp_path):
    config = load_config(write(tmp_path, "settings:\n  database: sqlite:///a.db\n"), env={})
    kept = config.with_settings(database="sqlite:///old.db", http=None)
    assert kept.settings.database == "sqlite:///old.db"
    assert kept.settings.timeout == config.settings.timeout
    assert isinstance(kept, Config)


def test_default_config_path():
    assert default_config_path({}) == Path("feeds.yaml")
    assert default_config_path({"MONITOR_CONFIG": "/etc/monitor.yaml"}) == Path("/etc/monitor.yaml")


# ---------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1.5h", 5400),
        ("45", 45),
        (45, 45),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["15 minutes", "m", "", "1x", "-5s", True, None, [1]])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(timedelta(seconds=s)) for s in (0.5, 30, 900, 5400, 90061)] == [
        "500ms",
        "30s",
        "15m",
        "1h30m",
        "1d1h1m1s",
    ]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10 * 1024**2),
        ("512KB", 512 * 1024),
        ("1GB", 1024**3),
        ("1.5 MiB", 1572864),
        (2048, 2048),
        ("100", 100),
        ("100B", 100),
        ("10mb", 10 * 1024**2),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["10 megs", "MB", "-1", True, 1.5])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_format_size():
    assert [format_size(n) for n in (10 * 1024**2, 512 * 1024, 1500)] == ["10MB", "512KB", "1500B"]


# -- YAML features and limits of the reader (libyaml's C parser, YAML 1.2 fallback) -------


def test_merge_keys_fill_in_what_an_item_does_not_say(tmp_path):
    config, found, _ = check(
        tmp_path,
        f"""
        feeds:
          - &defaults {{url: "{FEED}", interval: 30m}}
          - <<: *defaults
            url: https://example.org/other.xml
        """,
    )
    assert found == [] and config is not None
    assert [(f.url, f.interval) for f in config.feeds] == [
        (FEED, timedelta(minutes=30)),
        ("https://example.org/other.xml", timedelta(minutes=30)),
    ]


def test_a_problem_in_a_merged_value_points_at_where_it_is_written(tmp_path):
    text = f'feeds:\n  - &d {{url: "{FEED}", interval: soon}}\n  - <<: *d\n    url: {FEED}x\n'
    found = problems(tmp_path, text)
    assert_problem(found, tmp_path, 2, 56, "feeds[1].interval", "invalid duration")


def test_yaml_12_syntax_that_libyaml_refuses_is_still_read(tmp_path):
    """``08:00`` is a plain scalar in a YAML 1.2 flow mapping; libyaml (YAML 1.1) refuses it."""
    config, found, _ = check(
        tmp_path,
        f"feeds: [{{url: '{FEED}'}}]\n"
        "alerts:\n  - {name: log, type: log, digest: 1d, digest_at: 08:00}\n",
    )
    assert found == [] and config is not None
    assert config.alerts[0].digest_at is not None


def test_alias_bomb_is_refused_without_expanding_it(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    found = problems(tmp_path, "\n".join(lines) + "\n")
    assert "expands to over 1,000,000 values" in found[0]


def test_unknown_tag_is_a_problem_at_its_value(tmp_path):
    found = problems(tmp_path, "feeds:\n  - url: !env FEED_URL\n")
    assert_problem(found, tmp_path, 2, 10, "feeds[0].url", "unsupported YAML tag !env")


def test_mapping_as_a_key_is_a_syntax_problem(tmp_path):
    found = problems(tmp_path, "? {a: 1}\n: x\n")
    assert "YAML syntax error" in found[0] and "plain value" in found[0]
