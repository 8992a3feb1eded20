"""``lenet``'s command line: ``main``, the LightningCLI subclass, lenet's subcommands, help, console, checks."""
