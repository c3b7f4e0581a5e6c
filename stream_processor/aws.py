"""How to reach AWS (or the local emulators): read once by the CLI, handed to each component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """Region and an optional endpoint (moto in server mode); None means real AWS, default chain."""

    region: str | None = None
    endpoint_url: str | None = None

    def client(self, service: str, config: Any = None) -> Any:
        """A boto3 client for `service`, pointed at the endpoint override when there is one.

        `config` is an optional `botocore.config.Config` (timeouts, retries) for the client.
        """
        kwargs: dict[str, Any] = {}
        if config is not None:
            kwargs["config"] = config
        if self.region:
            kwargs["region_name"] = self.region
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return boto3.client(service, **kwargs)  # type: ignore[call-overload]
