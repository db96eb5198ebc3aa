"""The `monitor` command line: thin commands over config, storage and the daemon.

Exit status: 0 success, 1 runtime failure (storage unusable, lock held, a failed send),
2 usage or config error. Logs go to stderr; stdout carries command output only.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from monitor.config import Config, check_config, default_config_path, load_config
from monitor.durations import parse_duration
from monitor.errors import ConfigError, LockError, MonitorError, StorageError
from monitor.logs import setup_logging
from monitor.views import alert_json, feed_json, story_json

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("monitor.cli")


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Global options may come before or after the command name; the later one wins."""
    if value is not None and value is not False:
        ctx.ensure_object(dict)
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj[param.name] = value
    return value


def common_options(f: F) -> F:
    f = click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        expose_value=False,
        callback=_remember,
        help="feeds.yaml to use (default: $MONITOR_CONFIG, else ./feeds.yaml).",
    )(f)
    f = click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        expose_value=False,
        callback=_remember,
        help="Log level (default: info).",
    )(f)
    f = click.option(
        "--log-json",
        is_flag=True,
        default=False,
        expose_value=False,
        callback=_remember,
        help="Log one JSON object per line.",
    )(f)
    return f


def _opts() -> dict[str, Any]:
    ctx = click.get_current_context()
    obj = ctx.find_root().obj
    return obj if isinstance(obj, dict) else {}


def _setup_logs() -> None:
    o = _opts()
    setup_logging(str(o.get("log_level") or "info"), bool(o.get("log_json")))


def config_path() -> Path:
    p = _opts().get("config_path")
    return Path(p) if p else default_config_path()


def _load() -> Config:
    try:
        return load_config(config_path())
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(2)


def handles_errors(f: F) -> F:
    """Turn project errors into the contract's exit codes with one clear line, no traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _setup_logs()
        try:
            return f(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            sys.exit(2)
        except (StorageError, LockError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except MonitorError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _open_store(cfg: Config) -> Any:
    from storage.store import Store

    return Store.open(cfg.settings.database)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.version_option(package_name="feed-monitor")
def main() -> None:
    """feed-monitor: polls news feeds, groups coverage of one event into a story, and alerts
    when a tracked entity gets new coverage."""


@main.command()
@common_options
@handles_errors
def validate() -> None:
    """Check feeds.yaml; print each problem with its line and column (exit 0 or 2)."""
    path = config_path()
    cfg, problems, warnings = check_config(path)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    for p in problems:
        click.echo(p, err=True)
    if problems or cfg is None:
        sys.exit(2)
    click.echo(
        f"{path}: ok ({len(cfg.feeds)} feeds, {len(cfg.entities)} entities, "
        f"{len(cfg.alerts)} channels)"
    )


@main.command()
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.option("--enable", "enable_url", metavar="URL", help="Re-enable a feed disabled by 410.")
@handles_errors
def feeds(as_json: bool, enable_url: str | None) -> None:
    """Each feed: name, url, last fetch, last status, errors, next poll, articles stored."""
    cfg = _load()
    store = _open_store(cfg)
    if enable_url:
        if not store.feeds.enable(enable_url):
            click.echo(f"error: no stored feed with url {enable_url}", err=True)
            sys.exit(1)
        click.echo(f"enabled {enable_url}")
        return
    states = {s.url: s for s in store.feeds.states(count_articles=True)}
    rows = [feed_json(f.url, f.name, f.enabled, states.get(f.url)) for f in cfg.feeds]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        status = r["last_status"] if r["last_status"] is not None else "-"
        err = f"  error: {r['last_error']}" if r["last_error"] else ""
        click.echo(
            f"{r['name']}  <{r['url']}>  status={status} errors={r['consecutive_errors']} "
            f"articles={r['articles']} last={r['last_fetch'] or '-'} "
            f"next={r['next_poll'] or '-'} by={r['polled_by'] or '-'}"
            f"{'' if r['enabled'] else '  [disabled]'}{err}"
        )


@main.command()
@common_options
@click.option(
    "--since", "since", default=None, metavar="DUR", help="Last seen within DUR (default 24h)."
)
@click.option("--all", "show_all", is_flag=True, help="Every stored story.")
@click.option("--entity", default=None, metavar="NAME", help="Only stories mentioning NAME.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N stories.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.option(
    "--explain", "explain_id", default=None, metavar="ID", help="Why each article joined story ID."
)
@handles_errors
def stories(
    since: str | None,
    show_all: bool,
    entity: str | None,
    limit: int | None,
    as_json: bool,
    explain_id: str | None,
) -> None:
    """Stories, newest first (default --since 24h)."""
    if since and show_all:
        raise click.UsageError("--since and --all exclude each other")
    try:
        window = None if show_all else parse_duration(since or "24h")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    cfg = _load()
    store = _open_store(cfg)
    if explain_id:
        story = store.stories.get(explain_id)
        if story is None:
            click.echo(f"error: no story {explain_id}", err=True)
            sys.exit(1)
        found = [story]
    else:
        cutoff = None if window is None else datetime.now(UTC) - window
        found = store.stories.query(since=cutoff, entity=entity, limit=limit)
    data = [story_json(s, explain=bool(explain_id)) for s in found]
    if as_json:
        _echo_json(data)
        return
    for s in data:
        ents = f"  [{', '.join(s['entities'])}]" if s["entities"] else ""
        click.echo(f"{s['id']}  {s['last_seen']}  sources={s['sources']}  {s['title']}{ents}")
        for a in s["articles"]:
            reason = ""
            if "reason" in a:
                r = a["reason"]
                reason = f"  <- {r['method']} {r['score']} {', '.join(r['shared'])}"
            click.echo(f"    {a['published']}  {a['feed']}: {a['title']}{reason}")


@main.command()
@common_options
@click.option("--pending", is_flag=True, help="Only alerts still to be delivered.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.option(
    "--retry", "retry_id", default=None, metavar="ID", help="Put failed alert ID back to pending."
)
@click.option(
    "--failed", "retry_failed", is_flag=True, help="Put every failed alert back to pending."
)
@click.option("--channel", default=None, help="With --failed: only this channel.")
@handles_errors
def alerts(
    pending: bool, as_json: bool, retry_id: str | None, retry_failed: bool, channel: str | None
) -> None:
    """The outbox: each alert with channel, state, attempts, last error."""
    cfg = _load()
    store = _open_store(cfg)
    if retry_id or retry_failed:
        n = store.outbox.retry(alert_id=retry_id, channel=channel)
        if retry_id and n == 0:
            click.echo(f"error: no failed alert {retry_id}", err=True)
            sys.exit(1)
        click.echo(f"{n} alert(s) back to pending")
        return
    rows = [alert_json(a) for a in store.outbox.query(pending_only=pending)]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        err = f"  error: {r['last_error']}" if r["last_error"] else ""
        click.echo(
            f"{r['id']}  {r['created_at']}  {r['channel']}  {r['event']}  "
            f"{r['entity'] or '-'}  {r['state']} attempts={r['attempts']}{err}"
        )


@main.command()
@common_options
@click.option(
    "--deliver-timeout",
    default="30s",
    metavar="DUR",
    help="Wait at most this long for alert delivery (default 30s).",
)
@handles_errors
def poll(deliver_timeout: str) -> None:
    """One cycle over every enabled feed, then deliver due alerts (exit 0 even if feeds fail)."""
    from monitor.daemon import poll_once

    try:
        wait = parse_duration(deliver_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--deliver-timeout") from None
    cfg = _load()
    report = asyncio.run(poll_once(cfg, deliver_timeout=wait.total_seconds()))
    click.echo(report, err=True)


@main.command()
@common_options
@handles_errors
def run() -> None:
    """The daemon: poll on schedule, cluster, store, deliver; SIGHUP or a config edit reloads."""
    from monitor.daemon import run_daemon

    cfg = _load()
    asyncio.run(run_daemon(cfg))


@main.command("test-alert")
@common_options
@click.argument("channel")
@handles_errors
def test_alert(channel: str) -> None:
    """Send a sample alert through CHANNEL now (outside the outbox); exit 1 on failure."""
    from monitor.daemon import send_test_alert

    cfg = _load()
    names = [c.name for c in cfg.alerts]
    if channel not in names:
        raise click.BadParameter(
            f"no channel {channel!r} (channels: {', '.join(names) or 'none'})", param_hint="CHANNEL"
        )
    ok, message = asyncio.run(send_test_alert(cfg, channel))
    click.echo(message)
    if not ok:
        sys.exit(1)


@main.command("import-opml")
@common_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@handles_errors
def import_opml_cmd(file: Path) -> None:
    """Append the OPML's feeds to feeds.yaml, keeping its comments and order."""
    from monitor.opml import import_opml

    path = config_path()
    report = import_opml(file.read_bytes(), path)
    for url in report.added:
        click.echo(f"added {url}")
    for url in report.skipped_existing:
        click.echo(f"skipped (already present) {url}")
    for url in report.skipped_invalid:
        click.echo(f"skipped (not an http(s) feed URL) {url}")


@main.command("export-opml")
@common_options
@handles_errors
def export_opml_cmd() -> None:
    """Print the configured feeds as OPML 2.0."""
    from monitor.opml import export_opml

    cfg = _load()
    click.echo(export_opml([(f.name, f.url, tuple(f.tags)) for f in cfg.feeds]), nl=False)
