"""Stand-ins for AWS and Slack on one machine: the emulator stack and a Slack-compatible receiver."""
