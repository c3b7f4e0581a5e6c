"""Near-real-time alerting on AWS CloudTrail."""

__version__ = "0.1.0"
