"""The libjq worker process: runs the fallback rules over batches of events, where it may be killed.

libjq cannot be interrupted from Python, and some programs make it abort the process (an allocation it
cannot get, an assertion). So the rules the compiled path cannot run are evaluated here, in a child of the
record processor started by `libjq_worker.LibjqWorker`, never in the record processor itself:

- its address space is limited (RLIMIT_AS), so a rule that allocates without bound kills this process only;
- each event gets a CPU-time budget (ITIMER_PROF with SIGPROF's default action: the kernel ends the process
  when libjq overruns, however deep in C it is);
- before each event it writes the event's index to a shared page, so when it dies the parent knows the
  culprit event without asking.

Run as a script (`python -P this_file`), it imports nothing of the project: only the standard library and
the `jq` package. The protocol, on stdin/stdout, is length-prefixed `marshal` frames:

- first the programs: a list of jq program texts (each the driver `LibjqWorker` writes around the rules);
  the answer is a list with, per program, None or its compile error;
- then requests `(program index, one, per-event CPU budgets in seconds, input bytes)`; the input holds
  one JSON value per event, and the driver outputs one value per input: one rule's result (`one`) or a
  list. The answer is `(outputs, failure)`: the outputs in order, and None or `(index, message)` when the
  input could not be parsed at that event (the events after it are not run).
"""

from __future__ import annotations

import marshal
import mmap
import resource
import signal
import struct
import sys
from typing import Any, BinaryIO

_HEADER = struct.Struct("<Q")
PROGRESS = struct.Struct("<I")
NO_EVENT = 0xFFFFFFFF
OUTPUT_CAP = 1 << 20
"""An output (of a rule on one event) larger than this, marshalled, is not sent back: a rule error instead."""


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame, or None at the end of the stream."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    body = _read_exactly(stream, length)
    if body is None:
        return None
    return body


def frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _capped(result: Any) -> Any:
    """One rule's result (0, 1, `[value]` or `[null, error]`), as an error when the value is too large to
    send back (see OUTPUT_CAP)."""
    if type(result) is list and len(result) == 1 and type(result[0]) in (str, list, dict):
        size = len(marshal.dumps(result[0]))
        if size > OUTPUT_CAP:
            return [None, f"the rule's output is {size:,} bytes, more than the {OUTPUT_CAP:,} a rule may output"]
    return result


def serve(stdin: BinaryIO, stdout: BinaryIO, progress: mmap.mmap | None) -> int:
    import jq

    first = read_frame(stdin)
    if first is None:
        return 0
    texts: list[str] = marshal.loads(first)
    programs: list[Any] = []
    errors: list[str | None] = []
    for text in texts:
        try:
            programs.append(jq.compile(text))
            errors.append(None)
        except ValueError as error:
            programs.append(None)
            errors.append(str(error))
    stdout.write(frame(marshal.dumps(errors)))
    stdout.flush()
    setitimer = signal.setitimer
    itimer = signal.ITIMER_PROF
    mark = PROGRESS.pack_into
    while True:
        request = read_frame(stdin)
        if request is None:
            return 0
        index, one, budgets, text = marshal.loads(request)
        program = programs[index]
        outputs: list[Any] = []
        failure: tuple[int, str] | None = None
        iterator = iter(program.input_text(text.decode("utf-8", "replace")))
        for position, budget in enumerate(budgets):
            if progress is not None:
                mark(progress, 0, position)
            setitimer(itimer, budget)
            try:
                output = next(iterator)
                outputs.append(_capped(output) if one else [_capped(result) for result in output])
            except ValueError as error:  # the driver catches rule errors: this is the input's
                failure = (position, str(error))
                break
            except StopIteration:
                failure = (position, "the input ended early")
                break
        setitimer(itimer, 0)
        if progress is not None:
            mark(progress, 0, NO_EVENT)
        stdout.write(frame(marshal.dumps((outputs, failure))))
        stdout.flush()


def main(argv: list[str]) -> int:
    """argv: [memory limit in bytes, progress fd]."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends us by closing stdin
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # an overrun ends the process, wherever libjq is
    memory = int(argv[0])
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    progress = None
    if len(argv) > 1 and int(argv[1]) >= 0:
        progress = mmap.mmap(int(argv[1]), PROGRESS.size)
    return serve(sys.stdin.buffer, sys.stdout.buffer, progress)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
