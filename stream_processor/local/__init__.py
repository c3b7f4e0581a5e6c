"""Development tools that run the product on one machine: the emulator stack (kinesis-local, moto), a
Slack-compatible receiver, the traffic generator, the producer and the demo. They work from an installed
wheel: their files are package data (`data/`), and nothing here reaches for a checkout."""
