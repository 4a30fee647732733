"""The command line, thin: flags in, one library call, output out (main.py: the group and exit statuses;
options.py: the shared flags; one module per family of commands)."""
