"""A fast SMTP sink for the benchmarks: accepts every message and throws it away.

It speaks just enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT,
with PIPELINING advertised) and finds the end of a message by scanning for
``CRLF.CRLF`` without parsing it, so one core keeps up with several
senders. aiosmtpd parses every message and would be the bottleneck.

Run it as its own process: ``python -m bench.sink [--delay 0.01]``. It
prints ``PORT <n>`` once listening on 127.0.0.1, answers ``count`` on stdin
with ``COUNT <messages> <bytes> <repeats>`` (``repeats``: messages to a
recipient who had already had one, which an exactly-once sender never
causes), and exits when stdin closes. With
``--delay`` every reply waits that long after the previous reply of its
connection (a slow server that takes that long per command).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

_END = b"\r\n.\r\n"
_BUFSIZE = 1 << 18


class Counter:
    """Messages and bytes taken by every connection of one sink."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.seen: set[bytes] = set()  # every recipient that had a message
        self.repeats = 0


class SinkProtocol(asyncio.BufferedProtocol):
    """One SMTP connection: command lines, or DATA until the final dot.

    A buffered protocol: the kernel copies straight into one reused buffer,
    and message data is scanned in place, never copied or kept.
    """

    def __init__(self, counter: Counter, delay: float) -> None:
        self.counter = counter
        self.delay = delay
        self.buf = bytearray(_BUFSIZE)
        self.view = memoryview(self.buf)
        self.used = 0
        self.in_data = False
        self.size = 0
        self.next_free = 0.0
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []
        self.rcpt = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.reply(b"220 sink ESMTP\r\n")
        self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def reply(self, line: bytes) -> None:
        if self.delay <= 0:
            self.out.append(line)  # written once per read: fewer syscalls
            return
        loop = asyncio.get_running_loop()
        # Replies go out one after another, each ``delay`` after the one before.
        when = max(loop.time(), self.next_free) + self.delay
        self.next_free = when
        loop.call_at(when, self._write_late, line)

    def _write_late(self, line: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(line)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.used >= len(self.buf) - 4096:  # a command line this long is not SMTP
            self.used = 0
        return self.view[self.used :]

    def buffer_updated(self, nbytes: int) -> None:
        buf = self.buf
        end_at = self.used + nbytes
        pos = 0
        while pos < end_at:
            if self.in_data:
                if self.size == 0 and buf.startswith(b".\r\n", pos, end_at):  # an empty message
                    found, skip = pos, 3
                else:
                    found, skip = buf.find(_END, pos, end_at), 5
                if found < 0:
                    # Keep only a tail that may hold the start of the final dot line.
                    keep = min(4, end_at - pos)
                    self.size += end_at - pos - keep
                    buf[0:keep] = buf[end_at - keep : end_at]
                    pos, end_at = 0, keep
                    break
                counter = self.counter
                counter.messages += 1
                counter.bytes += self.size + found - pos
                if self.rcpt in counter.seen:
                    counter.repeats += 1
                counter.seen.add(self.rcpt)
                pos = found + skip
                self.in_data = False
                self.size = 0
                self.reply(b"250 2.0.0 queued\r\n")
                continue
            nl = buf.find(b"\n", pos, end_at)
            if nl < 0:
                break
            self.command(bytes(buf[pos:nl]).rstrip(b"\r").upper())
            pos = nl + 1
        if pos:
            rest = end_at - pos
            buf[0:rest] = buf[pos:end_at]
            end_at = rest
        self.used = end_at
        self.flush()

    def command(self, line: bytes) -> None:
        verb = line[:4]
        if verb == b"RCPT":
            self.rcpt = line[8:]  # what follows "RCPT TO:", upper-cased like the whole line
        if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            self.reply(b"250 2.0.0 ok\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self.size = 0
            self.reply(b"354 go ahead\r\n")
        elif verb in (b"EHLO",):
            self.reply(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 0\r\n")
        elif verb == b"HELO":
            self.reply(b"250 sink\r\n")
        elif verb == b"QUIT":
            self.reply(b"221 bye\r\n")
            self.flush()
            if self.transport is not None:
                loop = asyncio.get_running_loop()
                loop.call_later(self.delay + 0.001, self.transport.close)
        else:
            self.reply(b"502 5.5.2 not implemented\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(delay: float, port: int) -> None:
    loop = asyncio.get_running_loop()
    counter = Counter()
    server = await loop.create_server(lambda: SinkProtocol(counter, delay), "127.0.0.1", port, backlog=512)
    sock = server.sockets[0]
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"count":
            print(f"COUNT {counter.messages} {counter.bytes} {counter.repeats}", flush=True)
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.delay, args.port))


if __name__ == "__main__":
    main()
