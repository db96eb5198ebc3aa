"""feeds.yaml: read once, validated into frozen settings, every problem named by its place.

    text --YAML composer (libyaml's C parser)--> nodes that know their line and column
         --_Tree--> plain data + positions, ${NAME} replaced from the environment
         --pydantic, one item at a time--> models (every field problem collected)
         --cross checks--> duplicates, unknown entities, interval bounds
         --> Config, or ConfigError(["feeds.yaml:14:7: feeds[3].urll: unknown key", ...])

Lines and columns are 1-based. A problem about a key (unknown, missing) points at the
key; a problem about a value points at the value. Secrets (SMTP password, webhook secret,
header values, anything read from the environment) are never echoed in a message, and
are ``SecretStr`` in the models, so ``repr()`` of a config never shows them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from email.utils import parseaddr
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.parser import Parser as PurePythonParser

from monitor.durations import (
    check_time_zone,
    format_duration,
    parse_duration,
    parse_size,
    parse_time_of_day,
)
from monitor.errors import ConfigError

log = logging.getLogger(__name__)

Loc = tuple[str | int, ...]
Pos = tuple[int, int]  # (line, column), 1-based

try:
    _VERSION = metadata.version("feed-monitor")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    _VERSION = "0.1.0"
DEFAULT_USER_AGENT = f"feed-monitor/{_VERSION} (+https://github.com/feed-monitor/feed-monitor)"


# ---------------------------------------------------------------- field types


def _fail(message: str) -> PydanticCustomError:
    # the text travels in the context, so braces in user input are never a template
    return PydanticCustomError("config", "{message}", {"message": message})


def _duration(value: object) -> timedelta:
    try:
        parsed = parse_duration(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if parsed <= timedelta(0):
        raise _fail(f"must be longer than zero, got {value!r}")
    return parsed


def _retention(value: object) -> timedelta | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "never"):
        return None
    return _duration(value)


def _size(value: object) -> int:
    try:
        parsed = parse_size(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if parsed <= 0:
        raise _fail(f"must be more than zero bytes, got {value!r}")
    return parsed


def _many(value: object) -> object:
    """A lone string is a one-item list; ``null`` stays ``null``."""
    return [value] if isinstance(value, str) else value


def _many_or_empty(value: object) -> object:
    return () if value is None else _many(value)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _fail(f"not an http or https URL: {value!r}")
    return value


def _email_address(value: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", parseaddr(value)[1]):
        raise _fail(f"not an email address: {value!r}")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Duration = Annotated[timedelta, BeforeValidator(_duration)]
Size = Annotated[int, BeforeValidator(_size)]
WebUrl = Annotated[Text, AfterValidator(_http_url)]
EmailAddress = Annotated[Text, AfterValidator(_email_address)]
TextList = Annotated[tuple[Text, ...], BeforeValidator(_many_or_empty)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


def _base_dir(info: ValidationInfo) -> Path | None:
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    return base if isinstance(base, Path) else None


def _resolve(path: Path, base_dir: Path | None) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


# ---------------------------------------------------------------- settings


class HttpSettings(_Model):
    """Where /healthz and /metrics are served."""

    host: Text = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)


class Settings(_Model):
    database: Text = Field(default="sqlite:///monitor.db", validate_default=True)
    poll_interval: Duration = timedelta(minutes=15)
    min_interval: Duration = timedelta(minutes=1)
    max_interval: Duration = timedelta(hours=1)
    concurrency: int = Field(default=32, ge=1)
    per_host: int = Field(default=2, ge=1)
    timeout: Duration = timedelta(seconds=30)
    max_feed_bytes: Size = 10 * 1024 * 1024
    user_agent: Text = DEFAULT_USER_AGENT
    story_window: Duration = timedelta(hours=72)
    retention: Annotated[timedelta | None, BeforeValidator(_retention)] = timedelta(days=90)
    alert_backlog: bool = False
    broken_after: Duration = timedelta(hours=24)
    stale_after: Duration = timedelta(days=7)
    http: HttpSettings | None = None

    @field_validator("database")
    @classmethod
    def _database(cls, value: str, info: ValidationInfo) -> str:
        try:
            return database_url(value, _base_dir(info))
        except ValueError as exc:
            raise _fail(str(exc)) from None


def database_url(value: str, base_dir: Path | None = None) -> str:
    """Normalise a database URL: a relative SQLite path is made absolute against
    ``base_dir``; PostgreSQL goes through psycopg 3. Raise ``ValueError`` otherwise."""
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    hint = "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    if scheme in ("postgresql", "postgres") and sep:
        return f"postgresql+psycopg://{rest}"
    if scheme == "postgresql+psycopg" and sep:
        return value
    if scheme != "sqlite" or not sep:
        raise ValueError(f"unsupported database URL {value!r} ({hint})")
    file_part, question, query = rest.partition("?")
    if file_part in ("", "/:memory:"):
        return value
    if not file_part.startswith("/") or file_part == "/":
        raise ValueError(f"invalid SQLite URL {value!r} (use e.g. sqlite:///monitor.db)")
    path = _resolve(Path(file_part[1:]), base_dir)
    return f"sqlite:///{path}{question}{query}"


# ---------------------------------------------------------------- feeds and entities


class FeedConfig(_Model):
    """A feed; its configured ``url`` is its identity."""

    url: WebUrl
    name: Text | None = None  # None: the feed's own title
    interval: Duration | None = None  # None: adaptive, starting at settings.poll_interval
    tags: TextList = ()
    enabled: bool = True


class Alias(_Model):
    text: Text
    case: Literal["exact", "ignore"] = "ignore"


def _alias(value: object) -> object:
    return {"text": value} if isinstance(value, str) else value


class EntityConfig(_Model):
    """A tracked entity; its ``name`` is its identity."""

    name: Text
    aliases: Annotated[
        tuple[Annotated[Alias, BeforeValidator(_alias)], ...], BeforeValidator(_many_or_empty)
    ] = ()
    exclude: TextList = ()

    @property
    def terms(self) -> tuple[Alias, ...]:
        """What an article is searched for: the name (ignoring case), then every alias."""
        return (Alias(text=self.name), *self.aliases)


# ---------------------------------------------------------------- alert channels


class DigestAt(_Model):
    """When a digest goes out: a time of day in an IANA time zone."""

    at: time
    zone: str = "UTC"

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            check_time_zone(value)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        return value

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def __str__(self) -> str:
        return f"{self.at:%H:%M} {self.zone}"


def _digest_at(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        at, zone = parse_time_of_day(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    return {"at": at, "zone": zone}


class _Channel(_Model):
    name: Text
    entities: Annotated[tuple[Text, ...] | None, BeforeValidator(_many)] = None  # None: all
    tags: TextList = ()  # empty: every feed
    max_per_hour: int | None = Field(default=None, ge=1)
    digest: Duration | None = None
    digest_at: Annotated[DigestAt | None, BeforeValidator(_digest_at)] = None
    feed_health: bool = False


class SmtpSettings(_Model):
    host: Text = "localhost"
    port: int = Field(default=25, ge=1, le=65535)  # default by security: 25, 587 starttls, 465 ssl
    security: Literal["none", "starttls", "ssl"] = "none"
    username: Text | None = None
    password: SecretStr | None = None
    timeout: Duration | None = None  # None: settings.timeout (filled in by load_config)

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            security = data.get("security")
            ports = {"ssl": 465, "starttls": 587}
            data = {**data, "port": ports.get(security, 25) if isinstance(security, str) else 25}
        return data


class EmailChannel(_Channel):
    type: Literal["email"] = "email"
    to: Annotated[tuple[EmailAddress, ...], BeforeValidator(_many), Field(min_length=1)]
    from_: EmailAddress = Field(alias="from")
    smtp: Annotated[SmtpSettings, BeforeValidator(lambda v: {} if v is None else v)] = (
        SmtpSettings()
    )


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_OWN_HEADERS = ("content-type", "content-length", "host", "x-monitor-")


class WebhookChannel(_Channel):
    type: Literal["webhook"] = "webhook"
    url: WebUrl
    secret: SecretStr | None = Field(default=None, min_length=1)
    headers: Annotated[dict[str, SecretStr], BeforeValidator(lambda v: {} if v is None else v)] = (
        Field(default_factory=dict)
    )
    timeout: Duration | None = None  # None: settings.timeout (filled in by load_config)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if not _TOKEN.fullmatch(name):
                raise _fail(f"invalid header name {name!r}")
            if name.lower().startswith(_OWN_HEADERS):
                raise _fail(f"header {name!r} is set by the monitor itself")
            if any(char in secret.get_secret_value() for char in "\r\n"):
                raise _fail(f"header {name!r}: the value contains a line break")
        return value


class LogChannel(_Channel):
    type: Literal["log"] = "log"
    path: Path | None = None  # None: stdout

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            if not value.strip():
                raise _fail("must not be empty (leave path out to log to stdout)")
            return _resolve(Path(value.strip()), _base_dir(info))
        return value


ChannelConfig = EmailChannel | WebhookChannel | LogChannel
_CHANNEL_TYPES: dict[str, type[_Channel]] = {
    "email": EmailChannel,
    "webhook": WebhookChannel,
    "log": LogChannel,
}


# ---------------------------------------------------------------- the whole config


class Config(_Model):
    path: Path  # absolute path of the file it was read from
    settings: Settings = Settings()
    feeds: tuple[FeedConfig, ...] = ()
    entities: tuple[EntityConfig, ...] = ()
    alerts: tuple[Annotated[ChannelConfig, Field(discriminator="type")], ...] = ()

    _feed_index: dict[str, FeedConfig] | None = PrivateAttr(default=None)

    def feed_by_url(self, url: str) -> FeedConfig | None:
        """The feed configured with ``url`` (scheme and host compared ignoring case)."""
        if self._feed_index is None:
            self._feed_index = {_url_key(feed.url): feed for feed in self.feeds}
        hit = self._feed_index.get(url)
        return hit if hit is not None else self._feed_index.get(_url_key(url))

    def channel(self, name: str) -> ChannelConfig | None:
        return next((channel for channel in self.alerts if channel.name == name), None)

    def entity(self, name: str) -> EntityConfig | None:
        return next((entity for entity in self.entities if entity.name == name), None)

    def with_settings(self, **changes: Any) -> Config:
        """A copy with some settings replaced (not re-validated: pass parsed values)."""
        return self.model_copy(update={"settings": self.settings.model_copy(update=changes)})

    def fingerprint(self) -> str:
        """A stable hash of everything configured (secrets included, path excluded):
        equal for equal configs, different after any effective change."""
        data = _canonical(self.model_dump(exclude={"path"}))
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: object) -> object:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, Path | time):
        return str(value)
    return value


def _url_key(url: str) -> str:
    parts = urlsplit(url.strip())
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$MONITOR_CONFIG`` when set, else ``./feeds.yaml``."""
    env = os.environ if env is None else env
    return Path(env.get("MONITOR_CONFIG") or "feeds.yaml")


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise ConfigError listing every problem. Warnings are
    logged (``config_warning``)."""
    config, problems, warnings = check_config(path, env)
    for warning in warnings:
        log.warning("config_warning %s", warning)
    if config is None or problems:
        raise ConfigError(problems)
    return config


def check_config(
    path: Path, env: Mapping[str, str] | None = None
) -> tuple[Config | None, list[str], list[str]]:
    """Validate ``path``: (the config or None, problems, warnings), each problem and
    warning a line ``file:line:col: key.path: message``. Never raises for a bad file."""
    path = Path(path)
    env = os.environ if env is None else env
    try:
        yaml, node = _parse(_read(path))
        tree = _Tree.build(node, yaml, env)
    except _Unreadable as exc:
        return None, [exc.line(str(path))], []
    checker = _Checker(tree, path.absolute())
    config = checker.run()
    return (
        config,
        checker.lines(checker.problems, str(path)),
        checker.lines(checker.warnings, str(path)),
    )


# ---------------------------------------------------------------- reading YAML


class _Unreadable(Exception):
    def __init__(self, message: str, pos: Pos | None = None) -> None:
        super().__init__(message)
        self.message, self.pos = message, pos

    def line(self, name: str) -> str:
        where = f"{name}:{self.pos[0]}:{self.pos[1]}" if self.pos else name
        return f"{where}: {self.message}"


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Unreadable(f"cannot read the config file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _Unreadable("not UTF-8 text", (line, column)) from None


def _parse(text: str) -> tuple[YAML, Node | None]:
    """Compose ``text`` into nodes with libyaml's C parser (ruamel.yaml.clib): a
    2,000-feed file takes 60 ms there and 700 ms in pure Python. libyaml reads YAML 1.1
    syntax, which refuses a few YAML 1.2 documents (``{at: 08:00}``): on any error the
    pure-Python YAML 1.2 parser reads the text again, and decides and words the error."""
    fast = YAML(typ="safe", pure=False)
    if fast.Parser is not PurePythonParser:  # ruamel.yaml.clib is installed
        try:
            return fast, fast.compose(text)
        except YAMLError:
            pass
    yaml = YAML(typ="safe", pure=True)
    try:
        return yaml, yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark and exc.context_mark is not mark:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        if "${" in "".join(text.splitlines()[pos[0] - 1 : pos[0]]):
            message += " (inside [...] or {...}, quote a value that uses ${NAME})"
        raise _Unreadable(f"YAML syntax error: {message}", pos) from None
    except YAMLError as exc:  # ReaderError (a forbidden character) and kin
        offset = getattr(exc, "position", None)
        pos = (1, 1)
        if isinstance(offset, int):
            pos = (text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1)
        raise _Unreadable(f"YAML syntax error: {str(exc).splitlines()[0]}", pos) from None


_VARIABLE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class _Tree:
    """The document as plain data, with where each key and value sits."""

    data: object = None
    spots: dict[Loc, tuple[Pos, Pos]] = field(default_factory=dict)  # key, value position
    from_env: set[Loc] = field(default_factory=set)  # values holding an environment value
    broken: dict[Loc, str] = field(default_factory=dict)  # values that could not be read
    env: Mapping[str, str] = field(default_factory=dict)
    loader: YAML = field(default_factory=lambda: YAML(typ="safe"), repr=False)
    _visited: int = 0
    _open: set[int] = field(default_factory=set, repr=False)  # containers being walked

    @classmethod
    def build(cls, node: Node | None, yaml: YAML, env: Mapping[str, str]) -> _Tree:
        tree = cls(env=env, loader=yaml)
        tree.spots[()] = ((1, 1), (1, 1))  # an empty document
        if node is not None:
            tree.data = tree._plain(node, (), (1, 1), (1, 1))
        return tree

    def where(self, loc: Loc, on_key: bool = False) -> Pos:
        """Position of ``loc``'s value (or key); the nearest enclosing key when absent."""
        exact = loc in self.spots
        while loc not in self.spots:
            loc = loc[:-1]
        key, value = self.spots[loc]
        # a key missing from a mapping: the mapping's key; an item made from a scalar
        # (``to: one@example.org`` read as a list): the scalar
        return key if on_key or (not exact and key == value) else value

    def _plain(self, node: Node, loc: Loc, key: Pos, value: Pos) -> Any:
        self._visited += 1
        if self._visited > MAX_YAML_VALUES:  # aliases can make a small file expand without end
            raise _Unreadable(f"YAML document expands to over {MAX_YAML_VALUES:,} values (aliases)")
        if isinstance(node, MappingNode | SequenceNode):
            self.spots[loc] = (key, key)
            if id(node) in self._open:
                self.broken[loc] = "recursive YAML alias"
                return None
            self._open.add(id(node))
            try:
                if isinstance(node, MappingNode):
                    return {
                        name: self._plain(item, (*loc, name), _pos(k), _pos(item))
                        for name, k, item in self._pairs(node, loc)
                    }
                return [
                    self._plain(x, (*loc, i), _pos(x), _pos(x)) for i, x in enumerate(node.value)
                ]
            finally:
                self._open.discard(id(node))
        self.spots[loc] = (key, value)
        if _tag(node) not in _PLAIN_TAGS:
            self.broken[loc] = f"unsupported YAML tag {_tag(node)}"
            return None
        try:
            scalar = self.loader.constructor.construct_object(node, deep=True)
        except YAMLError as exc:  # e.g. ``!!int abc``
            self.broken[loc] = f"unreadable YAML value: {getattr(exc, 'problem', None) or exc}"
            return None
        if isinstance(scalar, str):
            return self._interpolate(scalar, loc)
        if scalar is None or isinstance(scalar, bool | int | float):
            return scalar
        if isinstance(scalar, date):
            return scalar.isoformat()
        self.broken[loc] = f"unsupported YAML value of type {type(scalar).__name__}"
        return None

    def _pairs(self, node: MappingNode, loc: Loc) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node); ``<<`` merges add the keys not given explicitly."""
        explicit: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for k, v in node.value:
            if _tag(k) == _MERGE_TAG:
                sources = v.value if isinstance(v, SequenceNode) else [v]
                for source in sources:
                    if not isinstance(source, MappingNode):
                        raise _Unreadable("YAML syntax error: '<<' merges only mappings", _pos(v))
                    for name, sk, sv in self._pairs(source, loc):
                        merged.setdefault(name, (sk, sv))
                continue
            if not isinstance(k, ScalarNode):
                raise _Unreadable("YAML syntax error: a key must be a plain value", _pos(k))
            name = str(self.loader.constructor.construct_object(k, deep=True))
            if name in explicit:
                raise _Unreadable(f"YAML syntax error: found duplicate key {name!r}", _pos(k))
            explicit[name] = (k, v)
        pairs = {**merged, **explicit}
        return [(name, k, v) for name, (k, v) in pairs.items()]

    def _interpolate(self, text: str, loc: Loc) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if match.group(0) == "$${":
                return "${"
            if name is None:
                self.broken[loc] = "unclosed '${' (write $${ for a literal ${)"
            elif not _NAME.fullmatch(name):
                self.broken[loc] = f"invalid environment variable name {name!r} in '${{{name}}}'"
            elif name not in self.env:
                self.broken[loc] = f"environment variable {name} is not set"
            else:
                self.from_env.add(loc)
                return self.env[name]
            return match.group(0)

        return _VARIABLE.sub(replace, text)


def _pos(node: Node) -> Pos:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _tag(node: Node) -> str:
    return str(getattr(node.tag, "value", node.tag))


_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "timestamp", "binary")
)
MAX_YAML_VALUES = 1_000_000


# ---------------------------------------------------------------- checking


@dataclass(frozen=True)
class _Problem:
    pos: Pos
    loc: Loc
    message: str

    def line(self, name: str) -> str:
        where = f"{name}:{self.pos[0]}:{self.pos[1]}: "
        return f"{where}{_dotted(self.loc)}: {self.message}" if self.loc else where + self.message


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


_SECTIONS = ("version", "settings", "feeds", "entities", "alerts")
M = TypeVar("M", bound=BaseModel)


class _Checker:
    """Validates a _Tree section by section, so one bad item hides no other problem."""

    def __init__(self, tree: _Tree, path: Path) -> None:
        self.tree, self.path = tree, path
        self.context = {"base_dir": path.parent}
        self.problems: list[_Problem] = []
        self.warnings: list[_Problem] = []
        for loc, message in tree.broken.items():
            self.problem(loc, message)

    def lines(self, found: list[_Problem], name: str) -> list[str]:
        return [item.line(name) for item in sorted(found, key=lambda item: item.pos)]

    def problem(self, loc: Loc, message: str, on_key: bool = False) -> None:
        self.problems.append(_Problem(self.tree.where(loc, on_key), loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(_Problem(self.tree.where(loc), loc, message))

    def run(self) -> Config | None:
        root = self.tree.data
        if not isinstance(root, dict):
            what = "the file is empty" if root is None else "expected a mapping"
            self.problem((), f"{what} (keys: version, settings, feeds, entities, alerts)")
            return None
        for key in root:
            if key not in _SECTIONS:
                self.problem((key,), "unknown key" + _did_you_mean(key, _SECTIONS), on_key=True)
        version = root.get("version", 1)
        if version != 1 or isinstance(version, bool):
            self.problem(("version",), f"unsupported version {version!r} (this monitor reads 1)")
        settings = self.model(
            Settings, {} if root.get("settings") is None else root["settings"], ("settings",)
        )
        feeds = self.items("feeds", lambda item, loc: self.model(FeedConfig, item, loc))
        entities = self.items("entities", lambda item, loc: self.model(EntityConfig, item, loc))
        channels = self.items("alerts", self.channel)
        self.check_settings(settings or Settings())
        self.check_feeds(feeds, settings or Settings())
        self.check_entities(entities)
        self.check_identities()
        self.check_channels(channels, feeds)
        if self.problems or settings is None:
            return None
        return Config(
            path=self.path,
            settings=settings,
            feeds=tuple(feed for _, feed in feeds),
            entities=tuple(entity for _, entity in entities),
            alerts=tuple(_with_timeout(channel, settings.timeout) for _, channel in channels),
        )

    def model(self, cls: type[M], data: object, loc: Loc) -> M | None:
        if any(loc[:n] in self.tree.broken for n in range(len(loc) + 1)):
            return None
        try:
            return cls.model_validate(data, context=self.context)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                self.pydantic_problem(cls, loc, error)
            return None

    def pydantic_problem(self, cls: type[BaseModel], prefix: Loc, error: ErrorDetails) -> None:
        inner = tuple(error["loc"])
        loc = (*prefix, *inner)
        if any(loc[:n] in self.tree.broken for n in range(len(loc) + 1)):
            return  # already reported: an unset ${VAR} or an unreadable value
        if error["type"] == "extra_forbidden":
            hint = _did_you_mean(str(loc[-1]), _keys_at(cls, inner[:-1]))
            self.problem(loc, "unknown key" + hint, on_key=True)
        elif error["type"] == "missing":
            self.problem(loc, "required key is missing", on_key=True)
        else:
            secret = loc in self.tree.from_env or {"password", "secret", "headers"} & set(loc)
            self.problem(loc, _describe(error, echo=not secret))

    def items(self, section: str, check: Callable[[object, Loc], M | None]) -> list[tuple[int, M]]:
        """Validate each item of a list section; (index, model) for those that pass."""
        value = self.tree.data.get(section) if isinstance(self.tree.data, dict) else None
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem((section,), f"expected a list, got {_show(value)}")
            return []
        checked = ((i, check(item, (section, i))) for i, item in enumerate(value))
        return [(i, model) for i, model in checked if model is not None]

    def channel(self, item: object, loc: Loc) -> _Channel | None:
        if not isinstance(item, dict):
            self.problem(loc, f"expected a mapping, got {_show(item)}")
            return None
        kind = item.get("type")
        if kind is None:
            self.problem((*loc, "type"), "required key is missing (email, webhook or log)", True)
        elif not isinstance(kind, str) or kind not in _CHANNEL_TYPES:
            self.problem((*loc, "type"), f"unknown channel type {kind!r} (email, webhook or log)")
        else:
            return self.model(_CHANNEL_TYPES[kind], item, loc)
        return None

    def check_settings(self, settings: Settings) -> None:
        low, start, high = settings.min_interval, settings.poll_interval, settings.max_interval
        shown = {"min": format_duration(low), "max": format_duration(high)}
        if low > high:
            self.problem(
                ("settings", "min_interval"),
                f"min_interval ({shown['min']}) is longer than max_interval ({shown['max']})",
            )
        elif not low <= start <= high:
            self.problem(
                ("settings", "poll_interval"),
                f"poll_interval ({format_duration(start)}) must lie between min_interval "
                f"({shown['min']}) and max_interval ({shown['max']})",
            )

    def check_feeds(self, feeds: list[tuple[int, FeedConfig]], settings: Settings) -> None:
        for i, feed in feeds:
            if feed.interval is not None and feed.interval < settings.min_interval:
                self.problem(
                    ("feeds", i, "interval"),
                    f"interval {format_duration(feed.interval)} is shorter than "
                    f"settings.min_interval ({format_duration(settings.min_interval)})",
                )

    def check_identities(self) -> None:
        """Duplicate urls and names, channels naming unknown entities; read from the
        document as written, so an item with some other problem is still compared."""
        urls = [(i, _url_key(url)) for i, url in self.raw("feeds", "url")]
        self.duplicates("feeds", "url", urls, "duplicate feed URL")
        entities = self.raw("entities", "name")
        names = [(i, name.casefold()) for i, name in entities]
        self.duplicates("entities", "name", names, "duplicate entity name")
        self.duplicates("alerts", "name", self.raw("alerts", "name"), "duplicate channel name")
        known = [name for _, name in entities]
        for i, item in self.raw("alerts", "entities", str | list):
            for j, name in enumerate([item] if isinstance(item, str) else item):
                if isinstance(name, str) and name.strip() not in known:
                    hint = _did_you_mean(name.strip(), known)
                    self.problem(("alerts", i, "entities", j), f"unknown entity {name!r}{hint}")

    def raw(self, section: str, key: str, kind: Any = str) -> list[tuple[int, Any]]:
        """(index, value) of ``key`` in each item of a list section, where it is a ``kind``."""
        items = self.tree.data.get(section) if isinstance(self.tree.data, dict) else None
        values = (
            [(i, item.get(key)) for i, item in enumerate(items or []) if isinstance(item, dict)]
            if isinstance(items, list)
            else []
        )
        return [
            (i, v.strip() if isinstance(v, str) else v) for i, v in values if isinstance(v, kind)
        ]

    def check_entities(self, entities: list[tuple[int, EntityConfig]]) -> None:
        for i, entity in entities:
            if _is_short(entity.name):
                self.warn(
                    ("entities", i, "name"),
                    f"the name {entity.name!r} has 3 letters or fewer and matches ignoring "
                    f"case; use a longer name and add {{text: {entity.name}, case: exact}} "
                    "as an alias",
                )
            for j, alias in enumerate(entity.aliases):
                if alias.case != "exact" and _is_short(alias.text):
                    self.warn(
                        ("entities", i, "aliases", j),
                        f"alias {alias.text!r} has 3 letters or fewer and matches ignoring "
                        f"case; write {{text: {alias.text}, case: exact}}",
                    )

    def check_channels(
        self, channels: list[tuple[int, _Channel]], feeds: list[tuple[int, FeedConfig]]
    ) -> None:
        tags = {tag for _, feed in feeds for tag in feed.tags}
        for i, channel in channels:
            for j, tag in enumerate(channel.tags):
                if tag not in tags:
                    self.warn(("alerts", i, "tags", j), f"no feed has the tag {tag!r}")
            if channel.digest_at is not None and channel.digest is None:
                self.problem(
                    ("alerts", i, "digest_at"), "digest_at needs a digest period (e.g. digest: 1d)"
                )

    def duplicates(self, section: str, key: str, items: list[tuple[int, str]], what: str) -> None:
        first: dict[str, int] = {}
        for i, value in items:
            if value not in first:
                first[value] = i
                continue
            line = self.tree.where((section, first[value]), on_key=True)[0]
            self.problem(
                (section, i, key), f"{what} (first at {section}[{first[value]}], line {line})"
            )


def _with_timeout(channel: _Channel, timeout: timedelta) -> ChannelConfig:
    """The channel with an unset timeout filled from settings.timeout."""
    if isinstance(channel, EmailChannel):
        if channel.smtp.timeout is not None:
            return channel
        return channel.model_copy(
            update={"smtp": channel.smtp.model_copy(update={"timeout": timeout})}
        )
    if isinstance(channel, WebhookChannel):
        return channel if channel.timeout else channel.model_copy(update={"timeout": timeout})
    assert isinstance(channel, LogChannel)  # the only other _Channel subclass
    return channel


def _is_short(text: str) -> bool:
    return sum(char.isalnum() for char in text) <= 3


def _keys_at(cls: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a model accepts at ``loc`` (for "did you mean")."""
    current: type[BaseModel] | None = cls
    for part in loc:
        if current is None:
            return []
        if isinstance(part, str):
            fields = current.model_fields.items()
            info = next((f for name, f in fields if (f.alias or name) == part), None)
            current = _model_in(info.annotation) if info else None
    return [f.alias or name for name, f in current.model_fields.items()] if current else []


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if found := _model_in(arg):
            return found
    return None


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        close = [choice for choice in choices if choice.casefold() == word.casefold()][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


_EXPECTED = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "time_type": "expected a time of day",
    "time_parsing": "expected a time of day",
    "path_type": "expected a file path",
}


def _describe(error: ErrorDetails, echo: bool) -> str:
    kind, context, value = error["type"], error.get("ctx") or {}, error["input"]
    got = f", got {_show(value)}" if echo else ""
    if kind == "config":
        message = str(context["message"])
        hidden = not echo and isinstance(value, str) and value
        return message.replace(value, "<hidden>") if hidden else message
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    if kind == "literal_error":
        return f"expected {context['expected']}{got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = "at least" if kind == "greater_than_equal" else "at most"
        return f"must be {bound} {context.get('ge', context.get('le'))}{got}"
    message = str(error["msg"])
    return message[:1].lower() + message[1:] + got


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
