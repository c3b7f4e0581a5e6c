"""What kclpy hands a record processor, for tests that call `process_records` directly (no protocol)."""

from __future__ import annotations


class RecordingCheckpointer:
    def __init__(self) -> None:
        self.at: list[str | None] = []

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        self.at.append(sequence_number)


class KinesisRecord:
    """A kclpy Record as the processor reads it."""

    def __init__(self, data: bytes, sequence: str) -> None:
        self.binary_data = data
        self.sequence_number = sequence
        self.sub_sequence_number = 0
        self.partition_key = "p"
        self.timestamp_millis = 1_700_000_000_000


class ProcessRecordsInput:
    """A kclpy ProcessRecordsInput as the processor reads it."""

    def __init__(self, records: list[KinesisRecord], millis_behind: int = 0) -> None:
        self.records = records
        self.checkpointer = RecordingCheckpointer()
        self.millis_behind_latest = millis_behind
