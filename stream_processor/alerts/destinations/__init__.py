"""One destination per module, registered by `@register` and imported by its type name."""

from stream_processor.alerts.destinations.base import Destination, create_destination, destination_class, register

__all__ = ["Destination", "create_destination", "destination_class", "register"]
