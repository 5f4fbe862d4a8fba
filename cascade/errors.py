"""The one mark of an error in what the user gave (a file, a name, a setting, a folder).

Every such error class (a suite's, a results folder's, a dataset's, an unknown registered name)
derives from :class:`UserError` besides its usual built-in base, so the command line catches them
all with one clause: it prints the message on one line and exits with status 2, and nothing already
done is lost. Errors in the code itself are not ``UserError`` and keep their traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave is wrong or missing; the message names it and what is allowed."""
