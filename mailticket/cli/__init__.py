"""cli: the ``mailticket`` command line, one module per command family.

Owns: argument parsing, exit codes (``MailticketError`` → message + code, a
traceback only on bugs), progress output and the ``status`` report.
May import: anything below it, including ``daemon`` for ``serve``. Nothing
imports ``cli`` except ``__main__`` and the console script.
"""

from mailticket.cli.entry import main

__all__ = ["main"]
