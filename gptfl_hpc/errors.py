"""The one error type a user sees: a single line that names the problem and the fix."""


class UserError(Exception):
    """Bad input from the user (config, paths, command line).

    The CLI prints ``gptfl: error: <message>`` on one line and exits with code 2.
    Raise it before anything is written.
    """

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: multi-line messages would break the contract with scripts.
        super().__init__(" ".join(str(message).split()))
