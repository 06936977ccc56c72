"""Loaded by a test engine through PYTHONPATH: SIGKILLs the process at one exact step of writing the edge
credential, named by JOEY_TEST_KILL_AT. Python's audit events mark the steps, so the kill lands there every
time instead of wherever a timer happens to fall. Without the variable this does nothing."""
import os
import signal
import sys

_AT = os.environ.get("JOEY_TEST_KILL_AT")


def _matches(event: str, args: tuple) -> bool:
    if _AT == "mkdir":      # the answer to /edge/join is in; nothing written yet
        return event == "os.mkdir" and str(args[0]).endswith(os.sep + "edge")
    if _AT == "open-tmp":   # the temp file is being created
        return event == "open" and ".credential.json." in str(args[0])
    if _AT == "replace":    # the temp file is written and fsync'd; the rename is next
        return event == "os.rename" and str(args[1]).endswith("credential.json")
    return False


if _AT:
    def _hook(event: str, args: tuple) -> None:
        if _matches(event, args):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(_hook)
