"""The destination plug-in point: `deliver()` here, one `_send()` per destination module."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from stream_processor.aws import AwsSettings
from stream_processor.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from stream_processor.model import Alert, DestinationConfig

FORMAT_KEY = "format"
DEFAULT_FORMAT = "default"
TATTLETAIL_FORMAT = "tattletail"
"""cloudtrail-tattletail's payloads, byte for byte (`alerts/tattletail.py`), for sns, ses and slack_webhook."""

_REGISTRY: dict[str, type[Destination]] = {}
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
D = TypeVar("D", bound="type[Destination]")


class Destination(ABC):
    """Sends one alert somewhere; raises `RetryableDeliveryError` or `PermanentDeliveryError`.

    Subclasses set `TYPE` (the `type` value in the rule file) and the keys they need, and implement
    `_send`. Retries are not theirs to do: `alerts.delivery` owns the one retry policy.
    """

    TYPE: ClassVar[str]
    REQUIRED_KEYS: ClassVar[tuple[str, ...]] = ()
    OPTIONAL_KEYS: ClassVar[tuple[str, ...]] = ()
    TIMEOUT_SECONDS: ClassVar[float] = 10.0
    # (sustained sends per second, burst) the service tolerates; None: no limit of ours
    RATE_LIMIT: ClassVar[tuple[float, int] | None] = None

    def __init__(self, config: DestinationConfig, aws: AwsSettings | None = None) -> None:
        self.config = config
        self.aws = aws or AwsSettings()
        self.timeout: float = self.TIMEOUT_SECONDS
        """Seconds for each call to the service; the delivery policy may set it."""

    @property
    def id(self) -> str:
        return self.config.id

    def deliver(self, alert: Alert) -> None:
        """Send `alert` once; any failure comes out as a `DeliveryError` subclass."""
        try:
            self._send(alert)
        except DeliveryError:
            raise
        except Exception as error:  # a bug or an unexpected client error: retry, reported by type only
            raise RetryableDeliveryError(f"{type(error).__name__} from {self.TYPE} destination {self.id!r}") from error

    @abstractmethod
    def _send(self, alert: Alert) -> None:
        """Deliver to the service; raise `RetryableDeliveryError`/`PermanentDeliveryError` on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook, most destinations hold no connection
        """Release connections; the default has none."""

    @property
    def format(self) -> str:
        """The payload format `format` names (`default` unless set)."""
        return str(self.config.options.get(FORMAT_KEY, DEFAULT_FORMAT))


FORMATS: tuple[str, ...] = (DEFAULT_FORMAT, TATTLETAIL_FORMAT)


def format_problem(options: Mapping[str, Any], formats: tuple[str, ...] = FORMATS) -> str | None:
    """Why the `format` option is not one this destination writes, or None."""
    value = options.get(FORMAT_KEY, DEFAULT_FORMAT)
    if value in formats:
        return None
    choices = ", ".join(f'"{name}"' for name in formats)
    return (
        f"format {json.dumps(value)} is not one of {choices}: "
        f'format = "{TATTLETAIL_FORMAT}" sends cloudtrail-tattletail\'s payloads unchanged'
    )


def register(cls: D) -> D:
    """Class decorator: make a destination available under its `TYPE`."""
    _REGISTRY[cls.TYPE] = cls
    return cls


def destination_class(type_name: str) -> type[Destination]:
    """The class for a `type` value, importing `destinations/<type>.py` on first use.

    Raises:
        KeyError: no such destination type.
    """
    if type_name not in _REGISTRY and _TYPE_NAME.match(type_name):
        module = f"{__package__}.{type_name}"
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise KeyError(type_name) from None


def known_types() -> list[str]:
    """Every destination type shipped, for "did you mean" messages."""
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name != "base"]
    return sorted(names)


def create_destination(config: DestinationConfig, aws: AwsSettings | None = None) -> Destination:
    """Build the destination a `[[destination]]` describes."""
    return destination_class(config.type)(config, aws)


__all__ = [
    "DEFAULT_FORMAT",
    "FORMAT_KEY",
    "TATTLETAIL_FORMAT",
    "Destination",
    "PermanentDeliveryError",
    "RetryableDeliveryError",
    "create_destination",
    "destination_class",
    "format_problem",
    "known_types",
    "register",
]
