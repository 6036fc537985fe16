"""dcmtk's command-line tools (and dicom3tools'), found outside the virtual environment, and what storescu and
echoscu heard from the peer in protocol terms.

Finding the tools: pynetdicom installs console scripts named ``storescu``, ``echoscu``, ``storescp`` ... into the
virtual environment's ``bin``, so a bare ``storescu`` on a PATH that starts with ``.venv/bin`` is pynetdicom's, with
other options and other output. `dcmtk_tool` looks the name up on PATH without the virtual environment's ``bin``
(and in /usr/bin, /usr/local/bin), takes the first candidate whose ``--version`` says it is dcmtk's, and skips the
test with the reason when there is none (scripts/install-system-deps.sh installs dcmtk and dicom3tools).

What the peer said: `storescu` runs with ``-d``, whose dump of each incoming DIMSE message has the response's
Status field as a number ("DIMSE Status : 0xa700: ..."); `echoscu` runs with ``-ll trace``, whose dump of each
received command set has the Status element ("(0000,0900) US 0"). `parse_scu_output` turns either into a `ScuRun`:
the association's outcome, the A-ASSOCIATE-RJ fields as PS3.8 codes when it was rejected, and the status of each
response, so that tests compare numbers (0x0000, 0xA700, reason 3) rather than dcmtk's English. (dcmtk prints the
A-ASSOCIATE-RJ fields only by name, never its bytes; each name stands for one code, and a name not known here
fails the parse rather than pass unread.)
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

import pytest

INSTALL_HINT = "scripts/install-system-deps.sh installs it"


# -- finding the tools -------------------------------------------------------------------------------------------


def _virtual_environment_bins() -> set[str]:
    """The ``bin`` folders of the virtual environment this Python runs in (none when it runs in no venv: then
    sys.prefix is the system's, e.g. /usr, whose bin is where dcmtk lives)."""
    bins = set()
    if sys.prefix != sys.base_prefix:
        bins.add(os.path.join(sys.prefix, "bin"))
    if os.environ.get("VIRTUAL_ENV"):
        bins.add(os.path.join(os.environ["VIRTUAL_ENV"], "bin"))
    return {os.path.normcase(os.path.abspath(b)) for b in bins}


def _search_folders() -> list[str]:
    """PATH without the virtual environment's bin, then /usr/bin and /usr/local/bin, each once."""
    seen = _virtual_environment_bins()
    folders = []
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        key = os.path.normcase(os.path.abspath(folder))
        if folder and key not in seen:
            seen.add(key)
            folders.append(folder)
    return folders


def _version_text(path: str, flag: str) -> str:
    try:
        run = subprocess.run([path, flag], capture_output=True, text=True, errors="replace", timeout=30,
                             check=False)
    except OSError:
        return ""
    return run.stdout + run.stderr


def _is_dcmtk(name: str, path: str) -> bool:
    """dcmtk's tools print ``$dcmtk: <name> v3.6.7 2022-04-22 $`` first for ``--version``."""
    return re.match(rf"\$dcmtk: {re.escape(name)} v\d", _version_text(path, "--version")) is not None


def _is_dicom3tools(name: str, path: str) -> bool:
    """dicom3tools' tools print ``dicom3tools Version: ...`` for ``-version``."""
    return "dicom3tools Version:" in _version_text(path, "-version")


@functools.cache
def _find(name: str, genuine: Callable[[str, str], bool]) -> tuple[str | None, tuple[str, ...]]:
    """The first `name` outside the virtual environment that `genuine` accepts (None if none does), and the
    candidates it did not accept."""
    impostors = []
    for folder in _search_folders():
        candidate = os.path.join(folder, name)
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            continue
        if genuine(name, candidate):
            return candidate, ()
        impostors.append(candidate)
    return None, tuple(impostors)


def _skip(package: str, name: str, impostors: tuple[str, ...]) -> NoReturn:
    found = f"; {', '.join(impostors)} is not {package}'s" if impostors else ""
    pytest.skip(f"{package}'s {name} is not installed outside the virtual environment{found} ({INSTALL_HINT})")


def find_dcmtk(name: str) -> str | None:
    """The absolute path of dcmtk's `name`, None when dcmtk's is not installed."""
    return _find(name, _is_dcmtk)[0]


def dcmtk_tool(name: str) -> str:
    """The absolute path of dcmtk's `name` (storescu, echoscu, storescp, dcmdump, dsrdump, dcmconv ...); skips
    the test when dcmtk's is not installed."""
    path, impostors = _find(name, _is_dcmtk)
    if path is None:
        _skip("dcmtk", name, impostors)
    return path


def dicom3tools_tool(name: str) -> str:
    """The absolute path of dicom3tools' `name` (dciodvfy ...); skips the test when it is not installed."""
    path, impostors = _find(name, _is_dicom3tools)
    if path is None:
        _skip("dicom3tools", name, impostors)
    return path


def requires_dcmtk(*names: str) -> pytest.MarkDecorator:
    """A skip mark for tests (or a module's pytestmark) that need these dcmtk tools."""
    missing = [name for name in names if find_dcmtk(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"dcmtk's {', '.join(missing)} not installed outside the "
                                                    f"virtual environment ({INSTALL_HINT})")


# -- what storescu / echoscu heard -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """The A-ASSOCIATE-RJ fields (PS3.8 9.3.4, Table 9-21).

    result: 1 rejected-permanent, 2 rejected-transient. source: 1 service-user, 2 service-provider (ACSE),
    3 service-provider (presentation). reason, source 1: 1 no-reason-given, 2 application-context-name-not-
    supported, 3 calling-AE-title-not-recognized, 7 called-AE-title-not-recognized; source 2: 1 no-reason-given,
    2 protocol-version-not-supported; source 3: 1 temporary-congestion, 2 local-limit-exceeded.
    """

    result: int
    source: int
    reason: int


CALLING_AE_TITLE_NOT_RECOGNIZED = Rejection(result=1, source=1, reason=3)
CALLED_AE_TITLE_NOT_RECOGNIZED = Rejection(result=1, source=1, reason=7)

# dcmtk's names for the codes (ASC_printRejectParameters in dcmnet/libsrc/assoc.cc), each name one code.
_RESULTS = {"Rejected Permanent": 1, "Rejected Transient": 2}
_SOURCES = {"Service User": 1, "Service Provider (ACSE Related)": 2, "Service Provider (Presentation Related)": 3}
_REASONS = {"No Reason": 1, "App Context Name Not Supported": 2, "Calling AE Title Not Recognized": 3,
            "Called AE Title Not Recognized": 7, "Protocol Version Not Supported": 2, "Temporary Congestion": 1,
            "Local Limit Exceeded": 2}


@dataclass(frozen=True)
class Response:
    """One DIMSE response: the Affected SOP Instance UID it answers (None for C-ECHO) and its Status."""

    sop_instance_uid: str | None
    status: int


@dataclass(frozen=True)
class ScuRun:
    """A storescu or echoscu run. association: "accepted" (A-ASSOCIATE-AC), "rejected" (A-ASSOCIATE-RJ, its fields
    in `rejection`) or "none" (no association: connection refused, TLS handshake failed, aborted). `problems` are
    dcmtk's warning, error and fatal lines, for failure messages; `output` is everything (left out of repr)."""

    returncode: int
    association: Literal["accepted", "rejected", "none"]
    rejection: Rejection | None
    responses: tuple[Response, ...]
    problems: tuple[str, ...]
    output: str = field(repr=False)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


_DEBUG_RESPONSE = re.compile(r"^D: Message Type\s+: C-\w+ RSP$(.*?)^D: =+ END DIMSE MESSAGE", re.M | re.S)
_TRACE_COMMAND = re.compile(r"^T: DIMSE Command Received:\nT: \n(.*?)(?:^T: $|\Z)", re.M | re.S)
_REJECT = re.compile(r"^[A-Z]: Result: (.+?), Source: (.+?)$\n^[A-Z]: Reason: (.+?)$", re.M)


def _debug_responses(output: str) -> list[Response]:
    """From ``-d``: each INCOMING DIMSE MESSAGE of a response type, e.g.
    ``D: Affected SOP Instance UID     : 1.2.3`` and ``D: DIMSE Status                  : 0x0000: Success``."""
    responses = []
    for block in _DEBUG_RESPONSE.finditer(output):
        status = re.search(r"^D: DIMSE Status\s+: 0x([0-9a-fA-F]{4})\b", block.group(1), re.M)
        if status is None:
            continue  # the dump was cut off (the process was killed mid-message)
        uid = re.search(r"^D: Affected SOP Instance UID\s+: (\S+)$", block.group(1), re.M)
        responses.append(Response(uid.group(1) if uid else None, int(status.group(1), 16)))
    return responses


def _trace_responses(output: str) -> list[Response]:
    """From ``-ll trace``: each received command set, e.g. ``T: (0000,0900) US 0  # 2, 1 Status`` and
    ``T: (0000,1000) UI [1.2.3] # ..., 1 AffectedSOPInstanceUID``."""
    responses = []
    for block in _TRACE_COMMAND.finditer(output):
        status = re.search(r"^T: \(0000,0900\) US (\d+)\b", block.group(1), re.M)
        if status is None:
            continue
        uid = re.search(r"^T: \(0000,1000\) UI \[([0-9.]+)\]", block.group(1), re.M)
        responses.append(Response(uid.group(1) if uid else None, int(status.group(1))))
    return responses


def _rejection(output: str) -> Rejection | None:
    match = _REJECT.search(output)
    if match is None:
        return None
    result, source, reason = match.groups()
    if result not in _RESULTS or source not in _SOURCES or reason not in _REASONS:
        raise ValueError(f"A-ASSOCIATE-RJ fields dcmtk printed that tests/dcmtk.py does not know: {match.group(0)}")
    return Rejection(_RESULTS[result], _SOURCES[source], _REASONS[reason])


def parse_scu_output(output: str, returncode: int) -> ScuRun:
    """What storescu (``-d``) or echoscu (``-ll trace``) printed, as a `ScuRun`."""
    rejection = _rejection(output)
    if rejection is not None:
        association: Literal["accepted", "rejected", "none"] = "rejected"
    elif "BEGIN A-ASSOCIATE-AC" in output:  # the debug dump of the A-ASSOCIATE-AC's parameters
        association = "accepted"
    else:
        association = "none"
    trace = "T: DIMSE Command Received:" in output
    responses = _trace_responses(output) if trace else _debug_responses(output)
    problems = tuple(line for line in output.splitlines() if line.startswith(("W: ", "E: ", "F: ")))
    return ScuRun(returncode, association, rejection, tuple(responses), problems, output)


def _run(command: list[str], timeout: float) -> ScuRun:
    # TCP_NODELAY=1: without it, Nagle's algorithm in dcmtk delays each C-STORE by the peer's delayed ACK (~40 ms).
    run = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                         timeout=timeout, check=False, env={**os.environ, "TCP_NODELAY": "1"})
    return parse_scu_output(run.stdout, run.returncode)


def storescu(port: int, files: Sequence[Path], *, calling: str = "SCANNER", called: str = "SARCO",
             extra: Sequence[str | Path] = (), timeout: float = 300) -> ScuRun:
    """dcmtk's storescu sending `files` in one association to 127.0.0.1:`port`; skips the test without dcmtk."""
    return _run([dcmtk_tool("storescu"), "-d", *map(str, extra), "-aet", calling, "-aec", called, "127.0.0.1",
                 str(port), *map(str, files)], timeout)


def echoscu(port: int, *, calling: str = "SCANNER", called: str = "SARCO", extra: Sequence[str | Path] = (),
            timeout: float = 30) -> ScuRun:
    """dcmtk's echoscu (one C-ECHO) to 127.0.0.1:`port`; skips the test without dcmtk."""
    return _run([dcmtk_tool("echoscu"), "-ll", "trace", *map(str, extra), "-aet", calling, "-aec", called,
                 "127.0.0.1", str(port)], timeout)
