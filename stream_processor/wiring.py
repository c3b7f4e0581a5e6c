"""Where state lives and how AWS is reached, read one way everywhere, and the one function that builds a pipeline.

`consume`, the KCL record processor it starts, the Lambda handlers and every command read the same
`Settings`: flags first, then the environment, then the default of their deployment shape. The record
processor gets them as command-line flags (`Settings.to_argv`), read back by the same parser.

- state dir (the SQLite files' folder): `--state-dir`, `STREAM_PROCESSOR_STATE_DIR`, else `.local/state`
  (`consume`: its work dir);
- dedupe ledger: `--dedupe sqlite[:PATH] | memory | dynamodb:TABLE | none`, `STREAM_PROCESSOR_DEDUPE_TABLE`;
- dead letters: `--dead-letters sqlite[:PATH] | sqs:QUEUE_URL | none`, `STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL`;
- storm windows: `--storm sqlite[:PATH] | memory | dynamodb:TABLE | none`, `STREAM_PROCESSOR_STORM_TABLE`,
  `--storm-max`, `--storm-window`;
- AWS: `--region`, `--profile`, `--endpoint-url`, and the SDK's own variables (`aws.py`);
- limits: `--rule-budget-ms` (`STREAM_PROCESSOR_RULE_BUDGET_MS`) and the decode budgets `--max-record-bytes`,
  `--max-file-bytes`, `--max-record-items`, `--max-event-bytes` (`STREAM_PROCESSOR_MAX_RECORD_BYTES`, ...).

A host with a disk (`consume`, `replay --send`, `dead-letters`) keeps ledger, dead letters and storm windows in
SQLite files of the state dir unless something durable is named; Lambda and one-shot `match --send` keep none.
Storm windows are the live consumers' own: `replay`, redrive and `match` fold only when `--storm` says so, never
because the environment names the consumers' table.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream_processor.aws import AwsSettings
from stream_processor.decode import DEFAULT_BUDGET, DecodeBudget
from stream_processor.errors import ConfigError
from stream_processor.matcher.budget import RuleBudget

if TYPE_CHECKING:
    from stream_processor.alerts.storm import StormStore
    from stream_processor.dead_letters import DeadLetterStore
    from stream_processor.dedupe import DedupeStore
    from stream_processor.model import Alert, Config
    from stream_processor.pipeline import Pipeline

ENV_STATE_DIR = "STREAM_PROCESSOR_STATE_DIR"
ENV_DEDUPE_TABLE = "STREAM_PROCESSOR_DEDUPE_TABLE"
ENV_DEAD_LETTER_QUEUE_URL = "STREAM_PROCESSOR_DEAD_LETTER_QUEUE_URL"
ENV_STORM_TABLE = "STREAM_PROCESSOR_STORM_TABLE"
ENV_MATCHER = "STREAM_PROCESSOR_MATCHER"
ENV_RULE_BUDGET_MS = "STREAM_PROCESSOR_RULE_BUDGET_MS"
# The decode budgets: flag and variable per DecodeBudget field.
DECODE_LIMITS = {
    "record_bytes": ("--max-record-bytes", "STREAM_PROCESSOR_MAX_RECORD_BYTES"),
    "file_bytes": ("--max-file-bytes", "STREAM_PROCESSOR_MAX_FILE_BYTES"),
    "record_items": ("--max-record-items", "STREAM_PROCESSOR_MAX_RECORD_ITEMS"),
    "event_bytes": ("--max-event-bytes", "STREAM_PROCESSOR_MAX_EVENT_BYTES"),
}
_SIZE = re.compile(r"^\s*(\d+)\s*(|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

DEFAULT_STATE_DIR = Path(".local/state")
# File names in a state dir; `consume` uses its work dir as state dir, so `--state-dir WORK_DIR` finds them.
LEDGER_FILE = "ledger.sqlite3"
DEAD_LETTERS_FILE = "dead-letters.sqlite3"
STORM_FILE = "storm.sqlite3"

SQLITE, MEMORY, DYNAMODB, SQS, NONE = "sqlite", "memory", "dynamodb", "sqs", "none"
LEDGER_KINDS = (SQLITE, MEMORY, DYNAMODB, NONE)
DEAD_LETTER_KINDS = (SQLITE, SQS, NONE)
STORM_KINDS = (SQLITE, MEMORY, DYNAMODB, NONE)
_NEEDS_TARGET = frozenset({DYNAMODB, SQS})
_SQS_URL_REGION = re.compile(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/", re.IGNORECASE)
_ARN_REGION = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:([a-z0-9-]+):")


@dataclass(frozen=True, slots=True)
class Store:
    """A store as the flags spell it: `kind` (sqlite, memory, dynamodb, sqs, none) and its target, if any."""

    kind: str
    target: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind

    @property
    def enabled(self) -> bool:
        return self.kind != NONE

    @classmethod
    def parse(cls, text: str, kinds: Sequence[str], flag: str) -> Store:
        """`kind` or `kind:target`.

        Raises:
            ConfigError: an unknown kind, or dynamodb/sqs without its table or queue URL.
        """
        kind, _, target = text.strip().partition(":")
        choices = ", ".join(f"{k}:TABLE" if k == DYNAMODB else f"{k}:QUEUE_URL" if k == SQS else k for k in kinds)
        if kind not in kinds:
            raise ConfigError(f"{flag} {text!r}: choose {choices}")
        if kind in _NEEDS_TARGET and not target.strip():
            raise ConfigError(f"{flag} {text!r}: name the {'table' if kind == DYNAMODB else 'queue URL'}: {choices}")
        if kind in (MEMORY, NONE) and target:
            raise ConfigError(f"{flag} {text!r}: {kind} takes no location")
        return cls(kind, target.strip() or None)


@dataclass(frozen=True, slots=True)
class Shape:
    """The default stores of a deployment shape, when neither a flag nor the environment names one."""

    ledger: str = SQLITE
    dead_letters: str = SQLITE
    storm: str = SQLITE
    storm_from_env: bool = True
    """Whether `STREAM_PROCESSOR_STORM_TABLE` applies: the live consumers' windows, not a replay's."""


HOST = Shape()
"""A host with a disk (`consume`, `replay --send`, `dead-letters`): SQLite files in the state dir."""
ONE_SHOT = Shape(ledger=NONE, dead_letters=NONE, storm=NONE, storm_from_env=False)
"""`match --send`: sends what it matched once; what fails is reported and in the exit status."""
LAMBDA = Shape(ledger=NONE, dead_letters=NONE, storm=NONE)
"""Lambda: no disk that outlives the container; the templates set the DynamoDB ledger, the SQS queue and the
DynamoDB storm table."""


@dataclass(frozen=True, slots=True)
class StormSettings:
    store: Store = Store(NONE)
    max_alerts_per_window: int | None = None
    window_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """What one rule may spend on one event, and what one record, file or event may cost to decode."""

    rule_budget_ms: float | None = None  # None: RuleBudget's default
    decode: DecodeBudget = DEFAULT_BUDGET

    def rule_budget(self) -> RuleBudget:
        return RuleBudget() if self.rule_budget_ms is None else RuleBudget(budget_ms=self.rule_budget_ms)

    @classmethod
    def read(cls, flag: Callable[[str], Any], environ: Mapping[str, str]) -> Limits:
        """Flags, then variables.

        Raises:
            ConfigError: a value that is not a size or a number of milliseconds.
        """
        budget_ms = flag("rule_budget_ms")
        if budget_ms is None and environ.get(ENV_RULE_BUDGET_MS, "").strip():
            budget_ms = _milliseconds(environ[ENV_RULE_BUDGET_MS], ENV_RULE_BUDGET_MS)
        sizes: dict[str, int] = {}
        for name, (_, variable) in DECODE_LIMITS.items():
            value = flag(name)
            if value is None and environ.get(variable, "").strip():
                value = parse_size(environ[variable], variable)
            if value is not None:
                sizes[name] = value
        try:
            decode = replace(DEFAULT_BUDGET, **sizes)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        return cls(budget_ms, decode)

    def to_argv(self) -> list[str]:
        argv = [] if self.rule_budget_ms is None else ["--rule-budget-ms", repr(self.rule_budget_ms)]
        for name, (option, _) in DECODE_LIMITS.items():
            value = getattr(self.decode, name)
            if value != getattr(DEFAULT_BUDGET, name):
                argv += [option, str(value)]
        return argv


def parse_size(text: str, what: str = "size") -> int:
    """Bytes from `1048576`, `512k`, `8MiB`, `4G` (binary units).

    Raises:
        ConfigError: not a whole number of bytes with an optional unit, or zero.
    """
    found = _SIZE.match(text)
    value = int(found.group(1)) * _SIZE_UNITS[found.group(2)[:1].lower()] if found else 0
    if value < 1:
        raise ConfigError(f"{what}={text!r} is not a size: write bytes (1048576) or with a unit (512k, 8MiB, 4G)")
    return value


def _milliseconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{what}={text!r} is not a number of milliseconds: write e.g. 50 (0: no budget)")
    return value


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    worker_id: str = "-"
    log_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a pipeline needs besides the rule file: how to reach AWS and where its state lives.

    SQLite locations are absolute paths once resolved (`resolve_paths`), so a child process started
    elsewhere opens the same files.
    """

    aws: AwsSettings = field(default_factory=AwsSettings)
    state_dir: Path = DEFAULT_STATE_DIR
    ledger: Store = Store(NONE)
    dead_letters: Store = Store(NONE)
    storm: StormSettings = field(default_factory=StormSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    matcher: str | None = None
    limits: Limits = field(default_factory=Limits)

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_env(cls, environ: Mapping[str, str], shape: Shape = LAMBDA) -> Settings:
        """Settings without flags (the Lambda handlers): the environment, then the shape's defaults.

        Raises:
            ConfigError: a variable names a store in a form that cannot be used.
        """
        return cls.from_args(argparse.Namespace(), environ, shape)

    @classmethod
    def from_args(
        cls,
        args: argparse.Namespace,
        environ: Mapping[str, str],
        shape: Shape = HOST,
        *,
        state_dir: Path | None = None,
    ) -> Settings:
        """Flags (as `add_*_arguments` define them; absent ones count as not given), then `environ`, then `shape`.

        `state_dir` is the command's own default folder (consume: its work dir).

        Raises:
            ConfigError: a flag or variable names a store in a form that cannot be used.
        """

        def flag(name: str) -> Any:
            return getattr(args, name, None)

        folder = Path(flag("state_dir") or environ.get(ENV_STATE_DIR) or state_dir or DEFAULT_STATE_DIR)
        ledger = _first_store(
            ("--dedupe", flag("dedupe"), LEDGER_KINDS),
            ("--dedupe-table", flag("dedupe_table") and f"{DYNAMODB}:{flag('dedupe_table')}", LEDGER_KINDS),
            ("--dedupe-db", flag("dedupe_db") and f"{SQLITE}:{flag('dedupe_db')}", LEDGER_KINDS),
            ("--no-dedupe", NONE if flag("no_dedupe") else None, LEDGER_KINDS),
            (ENV_DEDUPE_TABLE, _env_store(environ, ENV_DEDUPE_TABLE, DYNAMODB), LEDGER_KINDS),
            ("default", shape.ledger, LEDGER_KINDS),
        )
        dead_letters = _first_store(
            ("--dead-letters", flag("dead_letters"), DEAD_LETTER_KINDS),
            ("--dead-letters-queue", flag("dead_letters_queue") and f"{SQS}:{flag('dead_letters_queue')}",
             DEAD_LETTER_KINDS),
            ("--dead-letters-db", flag("dead_letters_db") and f"{SQLITE}:{flag('dead_letters_db')}",
             DEAD_LETTER_KINDS),
            (ENV_DEAD_LETTER_QUEUE_URL, _env_store(environ, ENV_DEAD_LETTER_QUEUE_URL, SQS), DEAD_LETTER_KINDS),
            ("default", shape.dead_letters, DEAD_LETTER_KINDS),
        )  # fmt: skip
        storm = _first_store(
            ("--storm", flag("storm"), STORM_KINDS),
            ("--no-storm", NONE if flag("no_storm") else None, STORM_KINDS),
            ("--storm-db", flag("storm_db") and f"{SQLITE}:{flag('storm_db')}", STORM_KINDS),
            (ENV_STORM_TABLE, _env_store(environ, ENV_STORM_TABLE, DYNAMODB) if shape.storm_from_env else None,
             STORM_KINDS),
            ("default", shape.storm, STORM_KINDS),
        )  # fmt: skip
        aws = AwsSettings.from_environ(
            environ,
            region=flag("region"),
            profile=flag("profile"),
            endpoint_url=flag("endpoint_url"),
            service_endpoints={**_service_endpoint_flags(args), **dict(flag("service_endpoint") or [])},
        )
        metrics = MetricsSettings(
            worker_id=flag("worker_id") or "-",
            log_seconds=60.0 if flag("metrics_log_seconds") is None else float(flag("metrics_log_seconds")),
        )
        settings = cls(
            aws=aws,
            state_dir=folder,
            ledger=ledger,
            dead_letters=dead_letters,
            storm=StormSettings(storm, flag("storm_max"), flag("storm_window")),
            metrics=metrics,
            matcher=flag("matcher") or environ.get(ENV_MATCHER) or None,
            limits=Limits.read(flag, environ),
        )
        return settings.resolve_paths()

    def resolve_paths(self) -> Settings:
        """Every SQLite store with its file: the state dir's default name, made absolute."""
        folder = self.state_dir.expanduser().absolute()

        def located(store: Store, file_name: str) -> Store:
            if store.kind != SQLITE:
                return store
            path = Path(store.target).expanduser() if store.target else folder / file_name
            return Store(SQLITE, str(path.absolute()))

        return replace(
            self,
            state_dir=folder,
            ledger=located(self.ledger, LEDGER_FILE),
            dead_letters=located(self.dead_letters, DEAD_LETTERS_FILE),
            storm=replace(self.storm, store=located(self.storm.store, STORM_FILE)),
        )

    def to_argv(self) -> list[str]:
        """These settings as flags `add_state_arguments`, `add_aws_arguments` and `add_metrics_arguments` read
        back to equal settings (the record processor's command line)."""
        argv = [*self.aws.as_argv(), "--state-dir", str(self.state_dir)]
        argv += ["--dedupe", str(self.ledger), "--dead-letters", str(self.dead_letters)]
        argv += ["--storm", str(self.storm.store)]
        if self.storm.max_alerts_per_window is not None:
            argv += ["--storm-max", str(self.storm.max_alerts_per_window)]
        if self.storm.window_seconds is not None:
            argv += ["--storm-window", repr(self.storm.window_seconds)]
        argv += ["--worker-id", self.metrics.worker_id, "--metrics-log-seconds", repr(self.metrics.log_seconds)]
        if self.matcher:
            argv += ["--matcher", self.matcher]
        return argv + self.limits.to_argv()

    # ------------------------------------------------------------------ checks

    def require_existing(self, *stores: Store) -> None:
        """For commands that read what another process wrote: each SQLite store's folder must exist, so a
        mistyped --state-dir is refused instead of looking like an empty store.

        Raises:
            ConfigError: a folder does not exist.
        """
        for store in stores:
            if store.kind != SQLITE or not store.target:
                continue
            folder = Path(store.target).parent
            if not folder.is_dir():
                raise ConfigError(
                    f"state folder {folder} does not exist: give --state-dir the folder the consumer writes "
                    f"(consume's --work-dir) or set {ENV_STATE_DIR}"
                )

    def describe(self) -> str:
        """One line for logs: which stores, never a secret (queue URLs and table names are not secrets)."""
        return f"ledger {self.ledger}, dead letters {self.dead_letters}, storm windows {self.storm.store}"


def _env_store(environ: Mapping[str, str], name: str, kind: str) -> str | None:
    value = environ.get(name, "").strip()
    return f"{kind}:{value}" if value else None


def _first_store(*candidates: tuple[str, str | None, Sequence[str]]) -> Store:
    for flag, value, kinds in candidates:
        if value:
            return Store.parse(str(value), kinds, flag)
    return Store(NONE)


def _service_endpoint_flags(args: argparse.Namespace) -> dict[str, str]:
    """The old per-service endpoint flags (hidden aliases) as service -> URL."""
    found: dict[str, str] = {}
    for service in ("kinesis", "dynamodb", "cloudwatch"):
        url = getattr(args, f"{service}_endpoint", None)
        if url:
            found[service] = str(url)
    return found


# --------------------------------------------------------------------------- flags


def add_aws_arguments(parser: argparse.ArgumentParser, *, services: Sequence[str] = ()) -> None:
    """--region, --profile, --endpoint-url (and the old endpoint flags as hidden aliases).

    `services`: which of the old per-service endpoint flags (`--kinesis-endpoint`, ...) this command accepted.
    """
    group = parser.add_argument_group("AWS (the SDK's settings when not given)")
    group.add_argument(
        "--region", help="AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, then the profile's region)"
    )
    group.add_argument("--profile", help="named profile of ~/.aws/config and credentials (default: $AWS_PROFILE)")
    group.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="send every AWS call here (e.g. moto at http://127.0.0.1:5000); per service: "
        "$AWS_ENDPOINT_URL_<SERVICE>, e.g. AWS_ENDPOINT_URL_KINESIS",
    )
    group.add_argument("--aws-endpoint", dest="endpoint_url", metavar="URL", help=argparse.SUPPRESS)
    group.add_argument(
        "--service-endpoint", action="append", type=_service_endpoint, metavar="SERVICE=URL", help=argparse.SUPPRESS
    )
    for service in services:
        group.add_argument(f"--{service}-endpoint", metavar="URL", help=argparse.SUPPRESS)


def _service_endpoint(text: str) -> tuple[str, str]:
    service, sep, url = text.partition("=")
    if not sep or not service.strip() or not url.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected SERVICE=URL, e.g. kinesis=http://127.0.0.1:4567")
    return service.strip(), url.strip()


def add_state_arguments(
    parser: argparse.ArgumentParser, shape: Shape = HOST, *, storm: bool = False, folder: str = str(DEFAULT_STATE_DIR)
) -> None:
    """--state-dir, --dedupe, --dead-letters (and --storm ... when `storm`), with the old flags as hidden aliases.

    `folder` names the command's own default state dir in the help (consume: its work dir).
    """
    group = parser.add_argument_group("state (flags, else the environment, else the default)")
    group.add_argument(
        "--state-dir",
        type=Path,
        help=f"folder of the SQLite stores (default: ${ENV_STATE_DIR}, else {folder})",
    )
    group.add_argument(
        "--dedupe",
        metavar="STORE",
        help="dedupe ledger: sqlite[:PATH] (one host), memory (one process), dynamodb:TABLE (many hosts), none "
        f"(default: dynamodb:${ENV_DEDUPE_TABLE} when set, else {shape.ledger})",
    )
    group.add_argument(
        "--dead-letters",
        metavar="STORE",
        help="where alerts that failed for good and malformed input are parked: sqlite[:PATH], sqs:QUEUE_URL, "
        f"none (default: sqs:${ENV_DEAD_LETTER_QUEUE_URL} when set, else {shape.dead_letters})",
    )
    group.add_argument("--dedupe-db", type=Path, help=argparse.SUPPRESS)
    group.add_argument("--dedupe-table", help=argparse.SUPPRESS)
    group.add_argument("--no-dedupe", action="store_true", help=argparse.SUPPRESS)
    group.add_argument("--dead-letters-db", type=Path, help=argparse.SUPPRESS)
    group.add_argument("--dead-letters-queue", help=argparse.SUPPRESS)
    if storm:
        group.add_argument(
            "--storm",
            metavar="STORE",
            help="storm windows (alerts folded into digests): sqlite[:PATH] (one host), memory (one process), "
            "dynamodb:TABLE (many hosts), none (default: "
            + (f"dynamodb:${ENV_STORM_TABLE} when set, else " if shape.storm_from_env else "")
            + f"{shape.storm})",
        )
        group.add_argument("--storm-max", type=int, help="alerts per rule, group and destination per window (10)")
        group.add_argument("--storm-window", type=float, metavar="SECONDS", help="storm window in seconds (60)")
        group.add_argument("--storm-db", type=Path, help=argparse.SUPPRESS)
        group.add_argument("--no-storm", action="store_true", help=argparse.SUPPRESS)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("metrics")
    group.add_argument("--worker-id", help="this worker's id (metrics labels; consume: the lease owner)")
    group.add_argument(
        "--metrics-log-seconds",
        type=float,
        metavar="SECONDS",
        help="each shard process writes a JSON line of its counters this often (0: never; default 60)",
    )


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The rule time budget and the decode budgets (docs/operations.md says what each bounds and why)."""
    group = parser.add_argument_group("limits (docs/operations.md: budgets)")
    group.add_argument(
        "--rule-budget-ms",
        type=_milliseconds_arg,
        metavar="MS",
        help="CPU time a rule may take on one event before it is stopped (a rule error); over it 3 times in "
        f"10 minutes, the rule is quarantined (default 50; 0: no budget; ${ENV_RULE_BUDGET_MS})",
    )
    defaults = {"record_bytes": "8MiB", "file_bytes": "4GiB", "record_items": "10000", "event_bytes": "1MiB"}
    meaning = {
        "record_bytes": "decompressed bytes of one Kinesis record",
        "file_bytes": "decompressed bytes of one file or S3 object",
        "record_items": "log events or items in one record",
        "event_bytes": "bytes of one event",
    }
    for name, (option, variable) in DECODE_LIMITS.items():
        group.add_argument(
            option,
            dest=name,
            type=parse_size if name != "record_items" else _count_arg,
            metavar="SIZE" if name != "record_items" else "N",
            help=f"{meaning[name]} (default {defaults[name]}; ${variable})",
        )


def _milliseconds_arg(text: str) -> float:
    try:
        return _milliseconds(text, "--rule-budget-ms")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _count_arg(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


# --------------------------------------------------------------------------- building


def region_for_store(store: Store, aws: AwsSettings, service: str) -> AwsSettings:
    """`aws` in the region an SQS queue URL or a DynamoDB table ARN names: the queue or table is there, whatever
    the configured region, and a command needs no --region to read it. Against an emulator (an endpoint
    override) a configured region is kept."""
    found = (_SQS_URL_REGION.match(store.target) or _ARN_REGION.match(store.target)) if store.target else None
    if found is None:
        return aws
    if (dict(aws.service_endpoints).get(service) or aws.endpoint_url) and aws.resolved_region:
        return aws
    return aws.with_region(found.group(1))


def open_ledger(settings: Settings) -> DedupeStore | None:
    from stream_processor.dedupe import DynamoDBDedupeStore, MemoryDedupeStore, SQLiteDedupeStore

    store = settings.ledger
    if store.kind == SQLITE:
        return SQLiteDedupeStore(store.target or settings.state_dir / LEDGER_FILE)
    if store.kind == MEMORY:
        return MemoryDedupeStore()
    if store.kind == DYNAMODB:
        assert store.target is not None
        client = region_for_store(store, settings.aws, "dynamodb").client("dynamodb")
        return DynamoDBDedupeStore(client, store.target)
    return None


def open_dead_letters(settings: Settings) -> DeadLetterStore | None:
    from stream_processor.dead_letters import SQLiteDeadLetterStore, SQSDeadLetterStore

    store = settings.dead_letters
    if store.kind == SQLITE:
        return SQLiteDeadLetterStore(store.target or settings.state_dir / DEAD_LETTERS_FILE)
    if store.kind == SQS:
        assert store.target is not None
        return SQSDeadLetterStore(region_for_store(store, settings.aws, "sqs").client("sqs"), store.target)
    return None


def open_storm(settings: Settings) -> StormStore | None:
    from stream_processor.alerts.storm import DynamoDBStormStore, MemoryStormStore, SQLiteStormStore, StormPolicy

    storm = settings.storm
    if not storm.store.enabled:
        return None
    defaults = StormPolicy()
    policy = replace(
        defaults,
        max_alerts_per_window=(
            defaults.max_alerts_per_window if storm.max_alerts_per_window is None else storm.max_alerts_per_window
        ),
        window_seconds=defaults.window_seconds if storm.window_seconds is None else storm.window_seconds,
    )
    store = storm.store
    if store.kind == MEMORY:
        return MemoryStormStore(policy)
    if store.kind == DYNAMODB:
        assert store.target is not None
        client = region_for_store(store, settings.aws, "dynamodb").client("dynamodb")
        return DynamoDBStormStore(client, store.target, policy)
    return SQLiteStormStore(store.target or settings.state_dir / STORM_FILE, policy)


def build_pipeline(
    config: Config,
    settings: Settings,
    *,
    send: bool,
    alert_sink: Callable[[Alert], None] | None = None,
    matcher_kind: str | None = None,
    park: bool = True,
) -> Pipeline:
    """The pipeline every source and command runs: the config's rules, and, when it sends, its destinations with
    the ledger, the dead-letter store (unless `park` is off: redrive parks by itself) and the storm windows.

    A dry run opens no store: it neither claims, parks nor folds (alerts go to `alert_sink`).

    Raises:
        ConfigError: the config cannot send (`stream_processor.config.sending_problems`), or a store cannot be opened as
            configured (AwsError for AWS set-up failures).
    """
    from stream_processor.config import sending_problems
    from stream_processor.pipeline import Pipeline

    kind = matcher_kind or settings.matcher or "fast"
    limits = settings.limits
    refused = sending_problems(config) if send else []
    if refused:
        raise ConfigError(refused)
    if not send:
        return Pipeline.build(
            config,
            aws=settings.aws,
            send=False,
            matcher_kind=kind,
            alert_sink=alert_sink,
            rule_budget=limits.rule_budget(),
            decode_budget=limits.decode,
        )
    return Pipeline.build(
        config,
        aws=settings.aws,
        send=True,
        matcher_kind=kind,
        alert_sink=alert_sink,
        ledger=open_ledger(settings),
        dead_letters=open_dead_letters(settings) if park else None,
        storm=open_storm(settings),
        rule_budget=limits.rule_budget(),
        decode_budget=limits.decode,
    )


__all__ = [
    "DEAD_LETTERS_FILE",
    "ENV_DEAD_LETTER_QUEUE_URL",
    "ENV_DEDUPE_TABLE",
    "ENV_STATE_DIR",
    "ENV_STORM_TABLE",
    "HOST",
    "LAMBDA",
    "LEDGER_FILE",
    "ONE_SHOT",
    "STORM_FILE",
    "Settings",
    "Shape",
    "Store",
    "add_aws_arguments",
    "add_metrics_arguments",
    "add_state_arguments",
    "build_pipeline",
    "open_dead_letters",
    "open_ledger",
    "open_storm",
]
