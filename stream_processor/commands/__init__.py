"""CLI sub-commands, one module each; `cli.COMMANDS` lists them by name."""
