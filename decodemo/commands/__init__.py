"""The command line's commands, one module per group of jobs.

Each module has ``add_parsers(sub)``, which adds its subcommands to ``build_parser``'s subparsers, and
``HANDLERS``, the subcommand name -> function that ``decodemo.cli.main`` dispatches to. The modules import
nothing heavy at module level (every command imports what it needs when it runs), so ``--help`` stays fast.
"""
