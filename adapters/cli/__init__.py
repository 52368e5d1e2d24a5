"""The `mantis` command line: its entry point, subcommands and logging setup."""
